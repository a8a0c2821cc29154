"""The images of a ``POST /predict`` request: the body read into memory under a byte limit, then split into
images — multipart fields ``image`` / ``images`` (one or several), or the raw bytes of one image with an
``image/*`` (or ``application/octet-stream``) Content-Type.

Nothing touches the disk: the body is bounded by ``--max-upload-mb`` and parsed in memory with
``python-multipart``'s streaming parser (Starlette's own form parser would spool parts over 1 MiB to
temporary files).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from elope.serve.images import BadUpload

__all__ = ["IMAGE_FIELDS", "RAW_TYPES", "Upload", "read_body", "split_uploads"]

IMAGE_FIELDS = ("image", "images")
RAW_TYPES = ("application/octet-stream",)  # besides image/*


@dataclass(frozen=True)
class Upload:
    """One uploaded image: ``name`` as the errors and answers call it, ``data`` its bytes."""

    name: str
    data: bytes


async def read_body(request: Any, limit: int) -> bytes:
    """The whole body of a Starlette ``request``, refused (413) past ``limit`` bytes before reading on."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadUpload(_too_large(int(declared), limit), 413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BadUpload(_too_large(total, limit, at_least=True), 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    what = f"at least {size}" if at_least else str(size)
    return f"request body of {what} bytes is over the upload limit of {limit} bytes (--max-upload-mb)"


class _Parts:
    """Callbacks of :class:`MultipartParser` collecting ``(headers, data)`` of each part in memory."""

    def __init__(self) -> None:
        self.parts: list[tuple[dict[str, bytes], bytearray]] = []
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": lambda: self.parts.append(({}, bytearray())),
            "on_part_data": lambda data, start, end: self.parts[-1][1].extend(data[start:end]),
            "on_header_field": self._add_field,
            "on_header_value": self._add_value,
            "on_header_end": self._end_header,
        }

    def _add_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _add_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _end_header(self) -> None:
        self.parts[-1][0][self._field.decode("latin-1").lower()] = self._value
        self._field, self._value = b"", b""


def _multipart(body: bytes, options: dict[bytes, bytes]) -> list[Upload]:
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadUpload("multipart/form-data without a boundary in its Content-Type", 400)
    parts = _Parts()
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        parser.write(body)
        parser.finalize()
    except Exception as error:  # python-multipart raises its own MultipartParseError and plain ValueErrors
        raise BadUpload(f"malformed multipart body: {error}", 400) from None
    uploads = []
    for index, (headers, data) in enumerate(parts.parts):
        _, disposition = parse_options_header(headers.get("content-disposition", b""))
        field = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
        if field not in IMAGE_FIELDS:
            raise BadUpload(
                f"multipart field {field or f'#{index}'!r} is not read: send each image as the field "
                f"'image' (or 'images', repeated); options go in the query string",
                400,
            )
        uploads.append(Upload(filename or f"{field}[{len(uploads)}]", bytes(data)))
    return uploads


def split_uploads(body: bytes, content_type: str | None, max_images: int) -> list[Upload]:
    """The images of a request body with ``content_type``; at most ``max_images`` of them.

    Raises:
        BadUpload: a Content-Type that carries no image (415), a malformed multipart body or no image
            field (400), too many images (400: a request the schema refuses, not a body too large).
    """
    kind, options = parse_options_header(content_type or "")
    kind_s = kind.decode("latin-1").lower()
    if kind_s == "multipart/form-data":
        uploads = _multipart(body, options)
    elif not kind_s or kind_s.startswith("image/") or kind_s in RAW_TYPES:
        uploads = [Upload("body", body)] if body or kind_s else []
    else:
        raise BadUpload(
            f"Content-Type {kind_s!r} is not accepted: send multipart/form-data with the field 'image', or "
            "the image's bytes with an image/* Content-Type",
            415,
        )
    if not uploads:
        raise BadUpload(
            "no image in the request: send multipart/form-data with the field 'image' (or 'images'), or the "
            "image's bytes with an image/* Content-Type",
            400,
        )
    if len(uploads) > max_images:
        raise BadUpload(
            f"{len(uploads)} images in one request, over the limit of {max_images} (--max-images)", 400
        )
    return uploads
