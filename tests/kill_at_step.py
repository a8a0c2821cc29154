"""``python tests/kill_at_step.py STAGE:EPOCH:STEP ARGS...``: ``elope ARGS``, SIGKILLed right after that
training step (stage name, epochs finished, steps done in the epoch), like a crash or an OOM kill.
``ELOPE_TEST_SIGNAL=TERM`` sends SIGTERM instead (what a scheduler sends).

The exact-resume tests run it in a subprocess. The hook is passed in, as any caller passes step hooks:
the command line hands ``ctx.obj["step_hooks"]`` (:data:`elope.commands.train.STEP_HOOKS`) to
:func:`elope.engine.train.run_training`; nothing of it lives in the library.
"""

from __future__ import annotations

import os
import signal
import sys

from elope.cli import main
from elope.commands.train import STEP_HOOKS
from elope.engine.stage_state import StageState


def kill_at(target: str) -> None:
    """A hook that kills this process after step ``target`` (``stage:epoch:step``)."""

    number = signal.Signals["SIG" + os.environ.get("ELOPE_TEST_SIGNAL", "KILL")]

    def hook(state: StageState) -> None:
        if f"{state.stage}:{state.epoch}:{state.step}" == target:
            os.kill(os.getpid(), number)

    return hook


if __name__ == "__main__":
    main(prog_name="elope", obj={STEP_HOOKS: [kill_at(sys.argv.pop(1))]})
