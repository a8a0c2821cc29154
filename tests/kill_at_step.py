"""``python tests/kill_at_step.py STAGE:EPOCH:STEP ARGS...``: ``elope ARGS``, SIGKILLed right after that
training step (stage name, epochs finished, steps done in the epoch), like a crash or an OOM kill.
``ELOPE_TEST_SIGNAL=TERM`` sends SIGTERM instead (what a scheduler sends).

The exact-resume tests run it in a subprocess; the hook goes into :data:`elope.engine.loop.STEP_HOOKS`,
so nothing of it lives in the library.
"""

from __future__ import annotations

import os
import signal
import sys

from elope.cli import main
from elope.engine.context import StageState
from elope.engine.loop import STEP_HOOKS


def kill_at(target: str) -> None:
    """Install the hook that kills this process after step ``target`` (``stage:epoch:step``)."""

    number = signal.Signals["SIG" + os.environ.get("ELOPE_TEST_SIGNAL", "KILL")]

    def hook(state: StageState) -> None:
        if f"{state.stage}:{state.epoch}:{state.step}" == target:
            os.kill(os.getpid(), number)

    STEP_HOOKS.append(hook)


if __name__ == "__main__":
    kill_at(sys.argv.pop(1))
    main(prog_name="elope")
