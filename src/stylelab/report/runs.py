"""Runs as the figures and the report see them: a typed record, the folder its images are in, and a label.

Read-only: nothing here computes a result; everything comes from the record (stylelab.spec.records).
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

KIND_TITLES = {"inversion": "Feature inversion", "texture": "Texture synthesis", "transfer": "Style transfer",
               "generation": "Style-guided diffusion"}
STYLE_LOSS_NAMES = {"gram": "Gram", "meanvar": "MeanVar"}


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
    def stand_in(self) -> str | None:
        """For a generation made by an embedded stand-in model: what was used instead of what, and why."""
        model = self.record.model if isinstance(self.record, GenerationRecord) else None
        if model is None or not model.embedded:
            return None
        return model.fallback_reason or f"{model.source} asked for by name"

    @property
    def name(self) -> str:
        """The run's name in the config: its folder for a generation (<name>/record.json), else the file's stem."""
        return self.path.parent.name if self.path.name == RECORD_NAME else self.path.stem

    @property
    def description(self) -> str:
        """What a generation was: guided (by which loss, how strongly) or not, and its steps."""
        settings = self.record.settings
        steps = self.record.timing.steps
        if settings.guidance_factor > 0:
            loss = STYLE_LOSS_NAMES.get(settings.style_loss, settings.style_loss)
            return f"{loss}-guided, s = {format_number(settings.guidance_factor)}, {steps} steps"
        return f"unguided, {steps} steps"

    @property
    def shown_name(self) -> str | None:
        """A generation's name where its description does not already start with it. Two unguided runs
        differ by their prompts only ("unguided" and "style_in_prompt"); the name tells them apart."""
        name = self.name
        return None if not name or self.description.startswith(name) else name

    @property
    def label(self) -> str:
        settings = self.record.settings
        if self.kind == "generation":
            name = self.shown_name
            return self.description + (f" ({name})" if name else "")
        if self.kind in ("inversion", "texture"):
            layer = resolve_layer(self.layer)
            return f"{layer.name} ({layer.canonical})"
        loss = STYLE_LOSS_NAMES.get(settings.style_loss, settings.style_loss)
        label = f"{loss}, style weight {format_number(settings.style_weight)}"
        # Part 3's settings, where a run has them (records made before Part 3 have none).
        mode = getattr(settings, "preserve_colors", "none")
        if mode != "none":
            label += f", colours: {mode}"
        blend = getattr(settings, "style_blend", None)
        if blend:
            label += ", blend " + " / ".join(format_number(round(w / sum(blend), 3)) for w in blend)
        scales = getattr(settings, "scales", None)
        if scales:
            label += ", scales " + " > ".join(map(str, scales)) + " px"
        return label

    @property
    def steps(self) -> list[int]:
        return self.record.steps

    def _step(self, step: int | None) -> str:
        return str(self.steps[-1] if step is None else step)

    def image_path(self, step: int | None = None) -> Path:
        """The file of a saved image (the last one by default), beside the record."""
        return self.path.parent / self.record.images[self._step(step)].file

    def image(self, step: int | None = None) -> np.ndarray:
        path = self.image_path(step)
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise StylelabError(f"cannot read image {path} named by record {self.path}: {exc}. "
                                "Run the experiment again to recreate it.") from None

    def image_loss(self, step: int | None = None) -> float:
        return float(self.record.images[self._step(step)].losses["total"])

    def distances(self, step: int | None = None) -> dict[str, float]:
        """Gram and MeanVar distance of a saved image to the style image ({} when the run has no style image).

        A generation saves one image, its final one, whose distances are the record's `style_distances`;
        a Part 1 run keeps them with each saved image.
        """
        if isinstance(self.record, GenerationRecord):
            return self.record.style_distances
        return self.record.images[self._step(step)].distances


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
