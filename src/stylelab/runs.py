"""Runs as the figures and the report see them: a record, the folder its images are in, and a label.

Read-only: nothing here computes a result; everything comes from the record JSON (stylelab.records).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import StylelabError
from .names import format_number
from .records import read_record
from .vgg import resolve_layer

KIND_TITLES = {"inversion": "Feature inversion", "texture": "Texture synthesis", "transfer": "Style transfer",
               "generation": "Style-guided diffusion"}
STYLE_LOSS_NAMES = {"gram": "Gram", "meanvar": "MeanVar"}


@dataclass
class Run:
    """One experiment run: its record, and its path, as the images it names are beside it."""

    path: Path
    record: dict

    @property
    def kind(self) -> str:
        return self.record["kind"]

    @property
    def layer(self) -> str:
        """The single layer of an inversion or texture run (tutorial name)."""
        settings = self.record["settings"]
        layers = settings["content_layers"] if self.kind == "inversion" else settings["style_layers"]
        return layers[0]

    @property
    def stand_in(self) -> str | None:
        """For a generation made by an embedded stand-in model: what was used instead of what, and why."""
        model = self.record.get("model", {})
        if not model.get("embedded"):
            return None
        return model.get("fallback_reason") or f"{model.get('source')} asked for by name"

    @property
    def label(self) -> str:
        if self.kind == "generation":
            settings = self.record["settings"]
            steps = self.record["timing"]["steps"]
            if settings["guidance_factor"] > 0:
                loss = STYLE_LOSS_NAMES.get(settings["style_loss"], settings["style_loss"])
                return f"{loss}-guided, s = {format_number(settings['guidance_factor'])}, {steps} steps"
            return f"unguided, {steps} steps"
        if self.kind in ("inversion", "texture"):
            layer = resolve_layer(self.layer)
            return f"{layer.name} ({layer.canonical})"
        settings = self.record["settings"]
        loss = STYLE_LOSS_NAMES.get(settings["style_loss"], settings["style_loss"])
        return f"{loss}, style weight {format_number(settings['style_weight'])}"

    @property
    def steps(self) -> list[int]:
        return sorted(int(step) for step in self.record["images"])

    def image(self, step: int | None = None) -> np.ndarray:
        step = self.steps[-1] if step is None else step
        path = self.path.parent / self.record["images"][str(step)]["file"]
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise StylelabError(f"cannot read image {path} named by record {self.path}: {exc}. "
                                "Run the experiment again to recreate it.") from None

    def image_loss(self, step: int | None = None) -> float:
        step = self.steps[-1] if step is None else step
        return float(self.record["images"][str(step)]["losses"]["total"])


def load_runs(paths: Sequence[str | os.PathLike]) -> list[Run]:
    runs = []
    for path in paths:
        path = Path(path)
        try:
            record = read_record(path)
        except FileNotFoundError:
            raise StylelabError(f"record {path} not found; run its experiment first.") from None
        except ValueError as exc:
            raise StylelabError(f"record {path} is not valid JSON ({exc}); run its experiment again.") from None
        for key in ("kind", "settings", "images", "history"):
            if key not in record:
                raise StylelabError(f"{path} is not a stylelab record: it has no '{key}'.")
        runs.append(Run(path, record))
    if not runs:
        raise StylelabError("no records given.")
    return runs
