"""Records: the JSON file beside every output that says how it was made and what it measured.

A record (`TransferRecord` for Part 1, `GenerationRecord` for Part 2) is written and read only here. Records
from before `schema_version` existed (version 0) have the same layout and load the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stylelab.spec.files import write_bytes_atomic
from stylelab.spec.settings import GuidanceSettings, TransferSettings

RECORD_NAME = "record.json"
SCHEMA_VERSION = 1


@dataclass
class ImageEntry:
    """One saved image: its file (beside the record), its losses and its style distances."""

    file: str
    losses: dict[str, float] = field(default_factory=dict)
    distances: dict[str, float] = field(default_factory=dict)


@dataclass
class Timing:
    steps: int
    time_per_step_s: float
    setup_s: float = 0.0
    optimise_s: float | None = None  # Part 1: the optimisation loop
    sampling_s: float | None = None  # Part 2: the denoising loop
    guided_steps: int | None = None  # Part 2: how many of the steps were guided

    @property
    def loop_s(self) -> float:
        return self.optimise_s if self.optimise_s is not None else (self.sampling_s or 0.0)


@dataclass
class ModelInfo:
    """The diffusion model a sample came from: a pipeline's `origin` from its loading to its record."""

    name: str  # what was asked for
    kind: str = ""  # sd | ddpm
    source: str = ""  # what was loaded
    embedded: bool = False  # a stand-in with random weights
    fallback_reason: str | None = None  # why the stand-in was used instead of `name`
    scheduler: str = ""
    revision: str | None = None  # asked for; commit: what it resolved to (from the model manifest)
    commit: str | None = None
    pinned: bool = False  # the revision was the commit itself, not a branch or tag
    files: list[dict] = field(default_factory=list)  # the files loaded: path, size, sha256


@dataclass
class Record:
    kind: str  # inversion | texture | transfer | generation
    settings: Any  # TransferSettings or GuidanceSettings, as the run used them
    image_size: list[int]  # height, width
    history: dict[str, list]  # per recorded step: step, time_s and the losses
    images: dict[str, ImageEntry]  # by step (as text, as in JSON)
    timing: Timing
    device: str = "cpu"
    device_name: str = ""
    precision: str = "fp32"
    precision_reason: str | None = None  # why: "asked for", or what `auto` found the hardware computes
    weights: str = "caffe"
    seed: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    resumed_from: list[int] = field(default_factory=list)
    determinism: dict = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)  # the command line that made it (`stylelab ...`)
    schema_version: int = SCHEMA_VERSION

    @property
    def steps(self) -> list[int]:
        return sorted(int(step) for step in self.images)


@dataclass
class TransferRecord(Record):
    final_losses: dict[str, float] = field(default_factory=dict)
    initial_loss: float = math.nan  # the loss at step 1
    optimizer_scale: float = 1.0
    # Coarse to fine: each scale before the last (the last is the record itself): {"size", "image_size", "steps",
    # "history" (its own steps), "final_loss", "time_s" (the run's clock when it ended)}.
    scale_history: list[dict] = field(default_factory=list)


@dataclass
class GenerationRecord(Record):
    model: ModelInfo | None = None
    style_distances: dict[str, float] = field(default_factory=dict)  # of the final image, by style loss
    style_size: list[int] | None = None  # [height, width] the style image was scored at (its aspect kept)


def _clean(value: Any) -> Any:
    """JSON-safe copy: tuples become lists, paths strings, NaN/inf strings (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_record(path: str | os.PathLike, record: Record) -> None:
    data = dataclasses.asdict(record)
    data["timing"] = {k: v for k, v in data["timing"].items() if v is not None}
    text = json.dumps(_clean(data), indent=1, sort_keys=False)
    write_bytes_atomic(path, (text + "\n").encode())


def _known(cls, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def read_record(path: str | os.PathLike) -> Record:
    """Raises FileNotFoundError, ValueError (not JSON), KeyError (not a record, naming what is missing) or TypeError."""
    with open(Path(path)) as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise KeyError("kind")
    for key in ("kind", "settings", "images", "history"):
        if key not in data:
            raise KeyError(key)
    generation = data["kind"] == "generation"
    cls, settings_cls = (GenerationRecord, GuidanceSettings) if generation else (TransferRecord, TransferSettings)
    values = _known(cls, data)
    values["settings"] = settings_cls(**_known(settings_cls, data["settings"]))
    values["images"] = {str(step): ImageEntry(**_known(ImageEntry, entry)) for step, entry in data["images"].items()}
    values["timing"] = Timing(**_known(Timing, data.get("timing", {"steps": 0, "time_per_step_s": 0.0})))
    values.setdefault("image_size", [0, 0])
    if generation and data.get("model") is not None:
        values["model"] = ModelInfo(**_known(ModelInfo, data["model"]))
    values["schema_version"] = int(data.get("schema_version", 0))
    return cls(**values)
