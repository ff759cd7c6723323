"""Checkpoints, so that an interrupted run goes on where it stopped and ends with the same image, bit for bit.

One folder per run outside Snakemake's outputs, named by a SHA-256 of all that decides its result and where it
writes, so no run picks up a stale state; a finished run deletes it, a failed one keeps its last good state.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stylelab.spec.files import write_bytes_atomic
from stylelab.run.stopping import DEFAULT_EVERY, Interval

log = logging.getLogger("stylelab.run.checkpoint")

# Bump when the saved state's layout changes: an older checkpoint then starts a fresh run instead of
# resuming into a state the code no longer understands.
FORMAT = 2
STATE_FILE = "state.pt"
DESCRIPTION_FILE = "run.json"
CACHE_ENV = "STYLELAB_CACHE"


def rng_state() -> dict:
    """Every global random generator's state, in types that torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": np.array(n["key"], dtype=np.uint32),
                         "pos": n["pos"]}, "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class CheckpointPolicy:
    """What a command asks of checkpointing; `open` makes the store of one run from its identity."""

    every: Interval = field(default_factory=lambda: Interval.parse(DEFAULT_EVERY))
    resume: bool = True  # False (--fresh): delete any old checkpoint of this run and start over
    root: Path | None = None  # None: $STYLELAB_CACHE, or .stylelab-cache in the working directory
    scope: dict = field(default_factory=dict)  # where the run writes its outputs, part of its identity
    # True: a finished run's checkpoint stays until outputs_written() (the CLI calls it once its files are
    # on disk), so a kill while the outputs are being written still finds the run's last state.
    keep_until_written: bool = False
    _finished: list = field(default_factory=list, repr=False)

    def open(self, identity: dict) -> "Checkpoint":
        identity = {"format": FORMAT, "torch": torch.__version__, **identity, "outputs": self.scope}
        text = json.dumps(identity, sort_keys=True, default=str)
        key = hashlib.sha256(text.encode()).hexdigest()
        root = self.root or Path(os.environ.get(CACHE_ENV) or ".stylelab-cache").expanduser()
        folder = root / "checkpoints" / f"{identity.get('kind', 'run')}-{key[:20]}"
        store = Checkpoint(folder, self.every, identity)
        if not self.resume:
            store.discard()
        return store

    def finished(self, store: "Checkpoint") -> None:
        if self.keep_until_written:
            self._finished.append(store)
        else:
            store.discard()

    def outputs_written(self) -> None:
        while self._finished:
            self._finished.pop().discard()


class Checkpoint:
    """The checkpoint folder of one run: load the last state, save a new one when due, delete at the end."""

    def __init__(self, folder: Path, every: Interval, identity: dict):
        self.folder = Path(folder)
        self.path = self.folder / STATE_FILE
        self.every = every
        self.identity = identity
        self.saved_step: int | None = None  # the step of the state on disk, if any
        self._last_step = 0
        self._last_time = time.monotonic()
        self._broken = False

    def load(self) -> dict | None:
        """The saved state, or None. An unreadable one is set aside with a warning: the run starts over."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if state.get("format") != FORMAT:
                raise ValueError(f"format {state.get('format')}, this stylelab writes {FORMAT}")
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, it cannot be resumed from
            log.warning("checkpoint %s cannot be read (%s); starting from the beginning", self.path, exc)
            self.discard()
            return None
        self.saved_step = self._last_step = int(state["step"])
        return state

    def due(self, step: int) -> bool:
        if self._broken:  # saving has failed once and is off: building a state each step would be wasted
            return False
        if self.every.steps:
            return step - self._last_step >= self.every.steps
        if self.every.seconds:
            return time.monotonic() - self._last_time >= self.every.seconds
        return False

    def save(self, step: int, state: dict) -> None:
        """Write the state atomically. A checkpoint only saves time, so a cache that cannot be written is a warning
        and the run goes on without checkpoints."""
        if self._broken:
            return
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "step": step, **state}, buffer)
        try:
            if not (self.folder / DESCRIPTION_FILE).is_file():
                # For a person looking into the cache: which run this folder belongs to.
                text = json.dumps(self.identity, indent=1, sort_keys=True, default=str)
                write_bytes_atomic(self.folder / DESCRIPTION_FILE, text.encode() + b"\n")
            write_bytes_atomic(self.path, buffer.getvalue())
        except OSError as exc:
            self._broken = True
            log.warning("cannot write a checkpoint to %s (%s); the run goes on without checkpoints. Set %s to a "
                        "writable folder to have them.", self.folder, exc.strerror or exc, CACHE_ENV)
            return
        self.saved_step, self._last_step, self._last_time = step, step, time.monotonic()
        log.info("checkpoint saved at step %d (%.1f MB) in %s", step, buffer.tell() / 1e6, self.folder)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.saved_step = None

    def kept_note(self) -> str:
        if self.saved_step is None:
            return "No checkpoint was saved before it."
        return (f"The last good checkpoint (step {self.saved_step}) is kept in {self.folder} (a run with other "
                "settings does not use it; delete the folder once you no longer need it).")

