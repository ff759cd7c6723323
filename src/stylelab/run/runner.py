"""The one loop every long run goes through: style transfer (Part 1) and guided sampling (Part 2).

A *task* is an algorithm cut into steps; the runner owns what all share: device and determinism, checkpoints
(resume, save when due or on SIGTERM), the messages for divergence and memory, progress, log and timing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from tqdm.auto import tqdm

from stylelab.run import checkpoint, runtime, stopping
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

    # identity: everything that decides the result (its hash names the checkpoint folder); describe: what is
    # computed, for an out-of-memory message; step n (1-based) returns values to show; state: what the remaining
    # steps read, for a checkpoint (None: no good state now); finish: the result.
    def identity(self, device: torch.device) -> dict: ...
    def describe(self) -> str: ...
    def setup(self, device: torch.device) -> None: ...
    def step(self, n: int, clock: Callable[[], float]) -> dict[str, float]: ...
    def state(self) -> dict | None: ...
    def load_state(self, state: dict) -> None: ...
    def finish(self, run: "RunInfo") -> Any: ...


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
        return {"setup_s": round(self.setup_s, 4), **extra, "time_per_step_s": round(self.time_per_step_s, 6),
                "steps": self.steps}

    def environment(self) -> dict:
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
        first, elapsed_before = 1, 0.0
        saved = store.load() if store is not None else None
        if saved is not None:  # resume from the last checkpoint
            task.load_state(saved["task"])
            run.resumed_from = [*saved["resumed_from"], saved["step"]]
            checkpoint.set_rng_state(saved["rng"])
            log.info("resuming %s from its checkpoint at step %d of %d (%s)", task.kind, saved["step"],
                     task.total_steps, store.folder)
            if saved.get("threads") != torch.get_num_threads():
                log.warning("the checkpoint was written with %s threads and this run has %d: on a CPU the result "
                            "may differ from an uninterrupted run in the last bits", saved.get("threads"),
                            torch.get_num_threads())
            first, elapsed_before = saved["step"] + 1, saved["elapsed_s"]
        run.setup_s = time.perf_counter() - t_start
        run.loop_s = _loop(task, store, run, first, elapsed_before, progress)
        result = task.finish(run)
    if store is not None:
        checkpoints.finished(store)
    return result, run


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
