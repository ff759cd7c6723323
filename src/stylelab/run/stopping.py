"""When a run saves and when it stops: the checkpoint interval and the SIGTERM request (torch-free, so that the
command line can build its parser without importing torch).
"""

from __future__ import annotations

import re
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_EVERY = "2m"


@dataclass(frozen=True)
class Interval:
    """How often to save: every `steps` steps, or every `seconds` of running (checked after each step)."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> "Interval":
        """'50' (steps), '90s', '5m', '1h' (time), or '0' (never, except when asked to stop)."""
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
        if not match:
            raise ValueError(f"'{text}' is neither a number of steps (50) nor a time (90s, 5m, 1h)")
        number, unit = match.groups()
        if not unit:
            if "." in number:
                raise ValueError(f"a number of steps is a whole number, got '{text}'")
            return cls(steps=int(number) or None)
        return cls(seconds=float(number) * {"s": 1, "m": 60, "h": 3600}[unit] or None)

    def __str__(self) -> str:
        if self.steps:
            return f"every {self.steps} steps"
        if self.seconds:
            return f"every {self.seconds:g} s"
        return "only when stopped"


class RunStopped(Exception):
    """The run stopped on request (SIGTERM) after saving a checkpoint; the same command continues it."""

    def __init__(self, step: int, total: int, folder: Path | None):
        self.step, self.total, self.folder = step, total, folder
        then = (f"its checkpoint is in {folder}. Run the same command again to continue from there." if folder
                else "no checkpoint could be saved, so the same command starts again from the last one, if any.")
        super().__init__(f"stopped by SIGTERM after step {step} of {total}; {then}")


_stop: dict[str, Any] = {"signal": None}


def _request_stop(signum, frame) -> None:
    _stop["signal"] = signum
    # A second SIGTERM means "now": the default action ends the process at once.
    signal.signal(signum, signal.SIG_DFL)


def stop_requested() -> bool:
    return _stop["signal"] is not None


@contextmanager
def stop_on_sigterm():
    """While inside, a SIGTERM asks the run to save a checkpoint and stop, instead of killing it."""
    _stop["signal"] = None
    try:
        previous = signal.signal(signal.SIGTERM, _request_stop)
    except ValueError:  # not the main thread: signals cannot be caught here, so leave them be
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _stop["signal"] = None
