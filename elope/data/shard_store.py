"""Where a shard set lies: a local folder, a ``file://`` URL or an ``http(s)://`` URL (:class:`ShardStore`).

A shard set (:mod:`elope.data.shards`) is read by byte ranges: the manifest says where each image lies in
its tar file, so a reader fetches just those bytes, from a local file (one open handle per file and
process) or from a web server with an HTTP ``Range`` request per image on one kept-alive connection per
process (any static file server: ``python -m http.server``, an object store's HTTP endpoint). A root given through a click path option arrives with its
``//`` collapsed (``http:/host/x``); :func:`normalize_root` restores it.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

from .errors import DatasetNotFoundError, ImageLoadError

__all__ = ["ShardStore", "normalize_root", "shown"]

_URL = re.compile(r"^(https?|file):/+", re.IGNORECASE)
_TIMEOUT_S = 60


def normalize_root(root: str | os.PathLike[str]) -> str:
    """``root`` as a local path or an ``http(s)://`` URL: ``file:`` URLs become paths, a collapsed
    ``http:/host`` gets its second slash back."""
    text = str(root)
    match = _URL.match(text)
    if match is None:
        return text
    scheme, rest = match.group(1).lower(), text[match.end() :]
    return "/" + rest if scheme == "file" else f"{scheme}://{rest}"


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as a name to show: an image of a shard set behind a URL (held in a :class:`~pathlib.Path`,
    which collapses ``//``) with its ``http(s)://`` back; any other path as it is."""
    text = str(path)
    return normalize_root(text) if re.match(r"^https?:/", text, re.IGNORECASE) else text


class ShardStore:
    """Byte ranges of the files of one shard set (a folder or a URL prefix)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = normalize_root(root)
        self.remote = self.root.startswith(("http://", "https://"))
        self._handles: dict[str, IO[bytes]] = {}
        self._http: http.client.HTTPConnection | None = None
        self._pid = os.getpid()

    def where(self, name: str) -> str:
        """The file ``name`` of the set, as a path or URL (for messages)."""
        return f"{self.root.rstrip('/')}/{name}" if self.remote else str(Path(self.root) / name)

    def size(self, name: str) -> int | None:
        """The size of file ``name`` in bytes; None when it is missing."""
        if not self.remote:
            try:
                return os.stat(self.where(name)).st_size
            except OSError:
                return None
        request = urllib.request.Request(self.where(name), method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as answer:
                length = answer.headers.get("Content-Length")
        except (urllib.error.URLError, OSError):
            return None
        return None if length is None else int(length)

    def read_all(self, name: str) -> bytes:
        """The whole file ``name`` (the manifest)."""
        try:
            if not self.remote:
                return Path(self.where(name)).read_bytes()
            with urllib.request.urlopen(self.where(name), timeout=_TIMEOUT_S) as answer:
                return answer.read()
        except (urllib.error.URLError, OSError) as error:
            raise DatasetNotFoundError(
                f"shard set: cannot read {self.where(name)} ({getattr(error, 'reason', error)}); write a "
                "shard set with `elope data shard --dataset NAME --root DATA --out FOLDER` and pass that "
                "folder (or its URL) as --root",
                self.where(name),
            ) from None

    def read(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes of file ``name`` from ``offset`` (fewer at its end)."""
        if self.remote:
            return self._range(name, offset, length)
        handle = self._handle(name)
        handle.seek(offset)
        return handle.read(length)

    def _range(self, name: str, offset: int, length: int) -> bytes:
        """An HTTP ``Range`` request on this process's kept-alive connection (opened again once when the
        server closed it); a server that ignores ``Range`` answers the whole file, which is cut."""
        url = urllib.parse.urlsplit(self.where(name))
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        for attempt in (1, 2):
            connection = self._connection(url)
            try:
                connection.request("GET", url.path or "/", headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                break
            except (http.client.HTTPException, OSError) as error:
                connection.close()
                self._http = None
                if attempt == 2:
                    raise ImageLoadError(
                        f"cannot read {self.where(name)}: {error}", self.where(name)
                    ) from None
        if answer.status not in (200, 206):
            raise ImageLoadError(
                f"cannot read {self.where(name)}: HTTP {answer.status} {answer.reason}", self.where(name)
            )
        return data if answer.status == 206 else data[offset : offset + length]

    def _connection(self, url: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        if os.getpid() != self._pid:  # a DataLoader worker: its own connection and files
            self._handles, self._http, self._pid = {}, None, os.getpid()
        if self._http is None:
            kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            self._http = kind(url.netloc, timeout=_TIMEOUT_S)
        return self._http

    def _handle(self, name: str) -> IO[bytes]:
        if os.getpid() != self._pid:  # a DataLoader worker: its own handles, never the parent's offsets
            self._handles, self._http, self._pid = {}, None, os.getpid()
        if name not in self._handles:
            self._handles[name] = open(self.where(name), "rb")  # noqa: SIM115 (kept open: read many times)
        return self._handles[name]

    def close(self) -> None:
        """Close the open files and the connection."""
        for handle in self._handles.values():
            handle.close()
        if self._http is not None:
            self._http.close()
        self._handles, self._http = {}, None

    def __getstate__(self) -> dict[str, object]:
        """Pickled (spawned DataLoader workers) without open files nor connection."""
        return {**self.__dict__, "_handles": {}, "_http": None}
