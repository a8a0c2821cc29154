"""The ``elope`` command line.

Each sub-command is a thin click layer in ``elope/commands/`` (parse, call, print) and is imported only
when it is invoked, so ``elope --help`` stays fast and one broken optional dependency never
takes the whole tool down.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from elope.outputs import OutputPathError

# name -> "module:attribute" of a click command. Keep sorted by the order of the recipe.
COMMANDS: dict[str, str] = {
    "data": "elope.commands.data:data",
    "train": "elope.commands.train:train_command",
    "evaluate": "elope.commands.evaluate:evaluate_command",
    "predict": "elope.commands.predict:predict_command",
    "export": "elope.commands.export:export_command",
    "embed": "elope.commands.embed:embed_command",
    "enroll": "elope.commands.enroll:enroll_command",
    "serve": "elope.commands.serve:serve_command",
    "web": "elope.commands.web:web_command",
    "demo": "elope.commands.demo:demo_command",
    "profile": "elope.commands.profile:profile_command",
    "ablate": "elope.commands.ablate:ablate_command",
    "suite": "elope.commands.suite:suite_command",
}


class _LazyGroup(click.Group):
    """A click group that imports each sub-command on first use (pattern from the click docs)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context) -> object:
        """Run the sub-command; Ctrl-C exits with 130 (128 + SIGINT), SIGTERM (what schedulers and
        ``kill`` send) the same way with 143 (128 + SIGTERM), and a full disk with one line."""
        received: list[int] = []
        try:
            try:
                with _sigterm_as_interrupt(received):
                    return super().invoke(ctx)
            except BaseException as error:
                if received and not isinstance(error, click.exceptions.Exit):
                    # SIGTERM may reach DataLoader workers first: whatever the main process raises, say why
                    click.echo("\nterminated (SIGTERM); a training run continues with --resume", err=True)
                    raise click.exceptions.Exit(143) from None
                raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted (Ctrl-C); a training run continues with --resume", err=True)
            raise click.exceptions.Exit(130) from None
        except OutputPathError as error:  # the writer refused a write during the work: one line
            raise click.ClickException(str(error)) from None
        except OSError as error:
            from elope.failures import is_no_space

            if not is_no_space(error):
                raise
            where = f" while writing {error.filename}" if error.filename else ""
            raise click.ClickException(f"no space left on device{where}: free space and run again") from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is (like Ctrl-C's KeyboardInterrupt, so the same clean-up runs:
    the checkpoint being written is discarded whole, the previous one stays, the run folder is unlocked)."""


@contextmanager
def _sigterm_as_interrupt(received: list[int]) -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the life of a command (main thread only); ``received``
    gets the signal number when it came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked DataLoader worker inherited this handler: end it quietly
            os._exit(128 + signum)
        received.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="elope")
def main() -> None:
    """ELoPE: fine-grained classification with efficient localization, pooling and embedding.

    Hanselmann & Ney, WACV 2020. Run `elope COMMAND --help` for the options of each command.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
