"""Runs as the figures and the report see them: a typed record, the folder its images are in, and a label.

Read-only: everything comes from the record (stylelab.spec.records). Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import format_number
from stylelab.spec.records import RECORD_NAME, GenerationRecord, Record, read_record
from stylelab.spec.layers import resolve_layer

KIND_TITLES = {"inversion": "Feature inversion", "texture": "Texture synthesis", "transfer": "Style transfer"}
STYLE_LOSS_NAMES = {"gram": "Gram", "meanvar": "MeanVar"}


def blend_shares(weights: Sequence[float]) -> str:
    """Blend weights as shares of their sum: '0.5 / 0.5'."""
    return " / ".join(format_number(round(w / sum(weights), 3)) for w in weights)


@dataclass
class Run:
    """One experiment run: its record, and its path, as the images it names are beside it."""

    path: Path
    record: Record

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def layer(self) -> str:
        """The single layer of an inversion or texture run (tutorial name)."""
        settings = self.record.settings
        layers = settings.content_layers if self.kind == "inversion" else settings.style_layers
        return layers[0]

    @property
    def loss_name(self) -> str:
        """The style loss, as shown: Gram or MeanVar."""
        loss = self.record.settings.style_loss
        return STYLE_LOSS_NAMES.get(loss, loss)

    @property
    def stand_in(self) -> str | None:
        """For a generation made by an embedded stand-in model: what was used instead of what, and why."""
        model = self.record.model if isinstance(self.record, GenerationRecord) else None
        if model is None or not model.embedded:
            return None
        return model.fallback_reason or f"{model.source} asked for by name"

    @property
    def label(self) -> str:
        settings = self.record.settings
        if self.kind == "generation":
            steps = self.record.timing.steps
            text = (f"{self.loss_name}-guided, s = {format_number(settings.guidance_factor)}, {steps} steps"
                    if settings.guidance_factor > 0 else f"unguided, {steps} steps")
            # Its name in the config (its folder, <name>/record.json) where the text does not start with it: two
            # unguided runs differ by their prompts only ("unguided" and "style_in_prompt").
            name = self.path.parent.name if self.path.name == RECORD_NAME else self.path.stem
            return text + (f" ({name})" if name and not text.startswith(name) else "")
        if self.kind in ("inversion", "texture"):
            layer = resolve_layer(self.layer)
            return f"{layer.name} ({layer.canonical})"
        label = f"{self.loss_name}, style weight {format_number(settings.style_weight)}"
        if settings.preserve_colors != "none":
            label += f", colours: {settings.preserve_colors}"
        if settings.style_blend:
            label += ", blend " + blend_shares(settings.style_blend)
        if settings.scales:
            label += ", scales " + " > ".join(map(str, settings.scales)) + " px"
        return label

    @property
    def steps(self) -> list[int]:
        return self.record.steps

    def _saved(self, step: int | None):
        """A saved image's entry in the record (the last one by default)."""
        return self.record.images[str(self.steps[-1] if step is None else step)]

    def image_path(self, step: int | None = None) -> Path:
        """The file of a saved image (the last one by default), beside the record."""
        return self.path.parent / self._saved(step).file

    def image(self, step: int | None = None) -> np.ndarray:
        path = self.image_path(step)
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise StylelabError(f"cannot read image {path} named by record {self.path}: {exc}. "
                                "Run the experiment again to recreate it.") from None

    def image_loss(self, step: int | None = None) -> float:
        return float(self._saved(step).losses["total"])

    def distances(self, step: int | None = None) -> dict[str, float]:
        """Gram and MeanVar distance of a saved image to the style image ({} without a style image). A
        generation saves only its final image, whose distances are the record's `style_distances`."""
        if isinstance(self.record, GenerationRecord):
            return self.record.style_distances
        return self._saved(step).distances


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
        except KeyError as exc:
            raise StylelabError(f"{path} is not a stylelab record: it has no '{exc.args[0]}'.") from None
        except (TypeError, AttributeError) as exc:
            raise StylelabError(f"{path} is not a stylelab record ({exc}); run its experiment again.") from None
        runs.append(Run(path, record))
    if not runs:
        raise StylelabError("no records given.")
    return runs
