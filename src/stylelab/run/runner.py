"""The one loop every long run goes through: style transfer (Part 1) and guided sampling (Part 2).

A *task* is an algorithm cut into steps: it sets itself up on a device, takes one step at a time, hands
over its state for a checkpoint (and takes one back), and finally gives its result. The runner owns what
every task shares, so each of those is written once:

- device choice and the determinism settings in force (runtime);
- checkpoints: resume from the last saved state, save one when due or when a SIGTERM asks the run to stop,
  then stop with `RunStopped` (stylelab.run.checkpoint);
- a step that stops being finite (the task raises `Diverged`): one message, with where the last good
  checkpoint is kept;
- running out of memory: one message with the device's memory and the task's advice;
- the progress bar, the log lines, and the timing of set-up and loop.

    result, run = run_task(task, device="auto", progress=True, checkpoints=policy)

`run` (a RunInfo) says how the run went: device, set-up and loop time, where it resumed from.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from tqdm.auto import tqdm

from stylelab.run import checkpoint, runtime
from stylelab.run import stopping
from stylelab.run.checkpoint import CheckpointPolicy
from stylelab.run.stopping import RunStopped
from stylelab.spec import provenance
from stylelab.spec.errors import StylelabError

log = logging.getLogger("stylelab.run.runner")


class Diverged(Exception):
    """Raised by a task's step when its loss or state stopped being finite; the text says what and why."""


class Task(Protocol):
    kind: str  # names the run in logs, checkpoints and the progress bar ("inversion", "generation", ...)
    total_steps: int
    oom_advice: str  # what to change when the device runs out of memory

    def identity(self, device: torch.device) -> dict:
        """Everything that decides the result (the checkpoint folder is named by its hash)."""

    def describe(self) -> str:
        """What is being computed, for an out-of-memory message ("for a 64 x 96 image (transfer, lbfgs)")."""

    def setup(self, device: torch.device) -> None:
        """Build the networks and targets and the starting state on `device`."""

    def step(self, n: int, clock: Callable[[], float]) -> dict[str, float]:
        """Take step n (1-based); `clock()` is the run's loop time so far. Returns values to show (may be empty)."""

    def state(self) -> dict | None:
        """Everything the remaining steps read, for a checkpoint; None when now is no good state to keep."""

    def load_state(self, state: dict) -> None:
        """Take back a state that `state()` gave."""

    def finish(self, run: "RunInfo") -> Any:
        """The result, once every step is taken."""


@dataclass
class RunInfo:
    device: torch.device
    determinism: dict
    steps: int
    setup_s: float = 0.0
    loop_s: float = 0.0
    resumed_from: list[int] = field(default_factory=list)

    @property
    def time_per_step_s(self) -> float:
        return self.loop_s / self.steps

    def timing(self, **extra) -> dict:
        """The record's timing block."""
        return {"setup_s": round(self.setup_s, 4), **extra, "time_per_step_s": round(self.time_per_step_s, 6),
                "steps": self.steps}

    def environment(self) -> dict:
        """The record's fields on where and how the run was made."""
        return {"resumed_from": self.resumed_from, "device": str(self.device),
                "device_name": runtime.device_name(self.device), "versions": provenance.package_versions(),
                "determinism": self.determinism}


def run_task(task: Task, device: str = "auto", progress: bool = True,
             checkpoints: CheckpointPolicy | None = None) -> tuple[Any, RunInfo]:
    """Run `task` to its end; with `checkpoints`, save its state as the policy says and resume from it."""
    t_start = time.perf_counter()
    resolved = runtime.resolve_device(device)
    determinism = runtime.configure_determinism(resolved)
    if resolved.type == "cpu":
        runtime.keep_freed_memory()
    run = RunInfo(resolved, determinism, task.total_steps)
    store = checkpoints.open({"kind": task.kind, **task.identity(resolved)}) if checkpoints is not None else None
    with runtime.explain_out_of_memory(resolved, task.describe, task.oom_advice):
        task.setup(resolved)
        first, elapsed_before = _resume(task, store, run)
        run.setup_s = time.perf_counter() - t_start
        run.loop_s = _loop(task, store, run, first, elapsed_before, progress)
        result = task.finish(run)
    if store is not None:
        checkpoints.finished(store)
    return result, run


def _resume(task: Task, store, run: RunInfo) -> tuple[int, float]:
    """Load the last checkpoint, if any: (the first step still to take, the loop time already spent)."""
    saved = store.load() if store is not None else None
    if saved is None:
        return 1, 0.0
    task.load_state(saved["task"])
    run.resumed_from = [*saved["resumed_from"], saved["step"]]
    checkpoint.set_rng_state(saved["rng"])
    log.info("resuming %s from its checkpoint at step %d of %d (%s)", task.kind, saved["step"], task.total_steps,
             store.folder)
    if saved.get("threads") != torch.get_num_threads():
        log.warning("the checkpoint was written with %s threads and this run has %d: on a CPU the result may "
                    "differ from an uninterrupted run in the last bits", saved.get("threads"), torch.get_num_threads())
    return saved["step"] + 1, saved["elapsed_s"]


def _loop(task: Task, store, run: RunInfo, first: int, elapsed_before: float, progress: bool) -> float:
    """Steps `first` to the last; returns the loop's time (resumed runs include the time before)."""
    total = task.total_steps
    log_every = max(1, total // 10)
    t_loop = time.perf_counter()

    def clock() -> float:
        return elapsed_before + time.perf_counter() - t_loop

    bar = tqdm(range(first, total + 1), desc=task.kind, unit="step", disable=not progress, mininterval=0.5,
               dynamic_ncols=True, leave=False, initial=first - 1, total=total)
    for n in bar:
        try:
            shown = task.step(n, clock)
        except Diverged as exc:
            note = store.kept_note() if store is not None else ""
            raise StylelabError(f"{exc} {note}".rstrip()) from None
        if shown:
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        if n % log_every == 0 or n == total:
            log.info("step %d/%d%s", n, total, "".join(f" {k} {v:.6g}" for k, v in shown.items()))
        if n < total:
            _checkpoint(task, store, n, run, clock)
    bar.close()
    return clock()


def _checkpoint(task: Task, store, n: int, run: RunInfo, clock) -> None:
    """Save when due or asked to stop; after a stop request, end the run (RunStopped)."""
    asked = stopping.stop_requested()
    if store is not None and (asked or store.due(n)):
        state = task.state()
        if state is not None:
            store.save(n, {"task": state, "elapsed_s": clock(), "resumed_from": run.resumed_from,
                           "rng": checkpoint.rng_state(), "threads": torch.get_num_threads()})
    if asked:
        # Name the checkpoint only if this step's was written (a save can fail, e.g. on a full disk).
        raise RunStopped(n, task.total_steps, store.folder if store is not None and store.saved_step == n else None)
