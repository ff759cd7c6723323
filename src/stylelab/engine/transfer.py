"""The optimisation behind Part 1 and 3: feature inversion, texture synthesis and style transfer.

One step is one optimiser iteration (L-BFGS with max_iter=1: one evaluation, one update; the tutorial's "300
steps" were 300 to 320 evaluations). Pixels are clamped to [0, 1] before each evaluation, as in the tutorial;
`bounds="project"` (default) also zeroes the gradient of pixels on a bound that point outward, without which
L-BFGS's curvature pairs stop describing the function and late runs can jump to noise (docs/method.md, "Pixels").
A run keeps the image at each listed step, so a 1000-step run's 300-step image is a 300-step run's.

`StyleTransfer` is one scale of it as a runner task (the runner owns checkpoints, stops, messages, progress and
timing); `CoarseToFine` drives one plain task per scale.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from stylelab.engine import colour, images
from stylelab.spec import records
from stylelab.run import runner, runtime
from stylelab.spec.errors import StylelabError
from stylelab.spec.files import file_digest, write_bytes_atomic
from stylelab.spec.layers import LAYERS, resolve_layer
from stylelab.engine.lbfgs import CompactLBFGS, skip_dynamo_import
from stylelab.engine.losses import Objective, StyleDistances
from stylelab.spec.records import ImageEntry, Timing, TransferRecord
from stylelab.spec.settings import INITS, TransferSettings
from stylelab.engine.vgg import VGGFeatures

log = logging.getLogger("stylelab.engine.transfer")

OOM_ADVICE = ("Lower --size (memory grows with the number of pixels), leave the GPU to one job at a time, "
              "or use --device cpu.")


@dataclass
class TransferResult:
    images: dict[int, torch.Tensor]
    record: TransferRecord


def _losses_dict(total: torch.Tensor, parts: dict) -> dict:
    values = {"total": total, **{f"content/{k}": v for k, v in parts["content"].items()},
              **{f"style/{k}": v for k, v in parts["style"].items()}}
    if parts["tv"] is not None:
        values["tv"] = parts["tv"]
    floats = torch.stack([v.detach().float() for v in values.values()]).tolist()
    return dict(zip(values, floats))


@torch.no_grad()
def optimizer_scale(grad: torch.Tensor) -> float:
    """The factor L-BFGS sees the loss multiplied by: 1, unless the first gradient's L1 norm is below 1.

    L-BFGS is scale invariant but for absolute thresholds (its first step min(1, 1/|g|_1) * lr, and s.y > 1e-10
    for a pair): a loss whose gradient is tiny (a Gram loss at pool_16, about 1e-11) would never move."""
    norm = float(grad.abs().sum())
    return 1.0 / norm if 0.0 < norm < 1.0 else 1.0


@torch.no_grad()
def project_gradient_(image: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Zero, in place, the gradient of pixels on a bound of [0, 1] that a descent step would push outside."""
    return grad.masked_fill_(((image <= 0) & (grad > 0)) | ((image >= 1) & (grad < 0)), 0.0)


def load_inputs(settings: TransferSettings, size: int) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """Content at `size` (short side); each style image at the content's exact size, or at `size` when there
    is no content (none when the style weight is 0)."""
    limit = settings.max_pixels
    content = images.load_image(settings.content, size, limit) if settings.content else None
    styles = []
    if settings.style_weight > 0:
        shape = tuple(content.shape[-2:]) if content is not None else size
        styles = [images.load_image(path, shape, limit) for path in settings.style_paths]
    return content, styles


def colour_inputs(content: torch.Tensor | None, styles: list[torch.Tensor], mode: str):
    """What the network sees of the content and style images under a colour preservation mode
    (stylelab.engine.colour): as they are; the styles with the content's colour statistics (match); or the
    luminance of both, the styles' matched to the content's (luminance: one channel each)."""
    if mode == "match":
        return content, [colour.match_colours(style, content) for style in styles]
    if mode == "luminance":
        content_y = colour.luminance(content)
        return content_y, [colour.match_luminance(colour.luminance(style), content_y) for style in styles]
    return content, styles


def network_input(image: torch.Tensor) -> torch.Tensor:
    """A one-channel (luminance) image is shown to the network as grey RGB; others as they are."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def check_fits_layers(height: int, width: int, layers: Sequence[str]) -> None:
    """Refuse an image that the poolings before the deepest layer would halve to nothing (a shape error deep in
    the network otherwise): after p 2 x 2 pools a side below 2**p pixels is gone."""
    for name in layers:
        layer = resolve_layer(name)
        pools = sum(1 for other in LAYERS[: layer.index + 1] if other.kind == "pool")
        if min(height, width) < 2 ** pools:
            raise StylelabError(
                f"the image is {width} x {height} pixels, too small for layer {name}: the {pools} poolings before "
                f"it halve it to nothing. Use --size {2 ** pools} or more, or a shallower layer.")


def _divergence_message(settings: TransferSettings, step: int, values: dict, lr: float) -> str:
    """Which loss stopped being finite, at which step, and what to change."""
    bad = [name for name, value in values.items() if name != "total" and not math.isfinite(value)]
    terms = f" ({', '.join(bad)} not finite)" if bad else ""
    causes = []
    if settings.style_weight > 0:
        causes.append(f"the style weight ({settings.style_weight:g}) is too large")
    if settings.content_weight > 0 and settings.style_weight == 0:
        causes.append(f"the content weight ({settings.content_weight:g}) is too large")
    causes.append(f"the learning rate ({lr:g}) is too large")
    return (f"the loss became {values['total']} at step {step}{terms}: the optimisation diverged, most likely "
            f"because {' or '.join(causes)}. Lower it (--style-weight, --lr) and run again; nothing was written.")


def run_transfer(settings: TransferSettings, progress: bool = True, checkpoints=None) -> TransferResult:
    """Run the optimisation; with `checkpoints` (a CheckpointPolicy), save its state and resume from it."""
    settings.validate()
    task = CoarseToFine(settings) if settings.scales else StyleTransfer(settings)
    result, _ = runner.run_task(task, settings.device, progress, checkpoints)
    return result


class StyleTransfer:
    """Gatys et al.'s optimisation as a runner task: one step is one optimiser iteration."""

    oom_advice = OOM_ADVICE

    def __init__(self, settings: TransferSettings, start: torch.Tensor | None = None, keep_images: bool = True):
        """`start`: an image to begin from instead of settings.init, resized (the coarser scale's result);
        `keep_images`: keep and score the image at each listed step (a coarser scale keeps none)."""
        self.settings, self.start, self.keep_images = settings, start, keep_images
        self.kind = settings.kind
        self.save_steps = sorted(set(int(s) for s in settings.steps))
        self.total_steps = self.save_steps[-1]
        self.lr = settings.learning_rate
        self.shape: tuple[int, ...] | None = None
        self.vgg: VGGFeatures | None = None  # given: a network shared with the coarser scales

    def _size(self, device: torch.device) -> int:
        if self.settings.scales:
            return self.settings.scales[-1]
        return runtime.auto_size(device) if self.settings.size == "auto" else self.settings.size

    def identity(self, device: torch.device) -> dict:
        s = self.settings
        decisive = {**dataclasses.asdict(s), "size": self._size(device), "lr": self.lr, "steps": self.save_steps}
        decisive.pop("max_pixels")  # refuses inputs, changes no result
        inputs = {name: file_digest(path) for name, path in (("content", s.content), ("init", s.init))
                  if path and (name != "init" or path not in INITS)}
        if s.style:
            inputs["style"] = (file_digest(s.style) if isinstance(s.style, str)
                               else [file_digest(path) for path in s.style])
        # auto resolves by the machine: a checkpoint made in another precision is not resumed.
        decisive["precision"] = runtime.choose_precision(s.precision, device, s.kind)[0]
        return {"settings": decisive, "device": str(device), "inputs": inputs}

    def describe(self) -> str:
        size = f"a {self.shape[-1]} x {self.shape[-2]} image" if self.shape else "an image"
        return f"for {size} ({self.kind}, {self.settings.optimizer})"

    def setup(self, device: torch.device) -> None:
        """The inputs at the run's size, checked against the layers, then everything built from them."""
        s = self.settings
        self.device, self.size = device, self._size(device)
        self.precision, self.precision_reason = runtime.choose_precision(s.precision, device, s.kind)
        self.content_layers = list(s.content_layers) if s.content_weight > 0 else []
        self.style_layers = list(s.style_layers) if s.style_weight > 0 else []
        content, styles = load_inputs(s, self.size)
        self.shape = tuple((content if content is not None else styles[0]).shape)
        check_fits_layers(self.shape[-2], self.shape[-1], [*self.content_layers, *self.style_layers])
        runtime.seed_everything(s.seed)
        if self.vgg is None:
            self.vgg = VGGFeatures(s.weights, seed=s.seed, precision=self.precision).to(device)
        self.objective = Objective(s.style_loss, s.content_weight, s.style_weight, s.tv_weight)
        self.colour_content = content  # the content's colours, put back on a luminance result
        content, styles = colour_inputs(content, styles, s.preserve_colors)
        with torch.no_grad():
            if self.content_layers:
                self.objective.set_content(self.vgg(network_input(content.to(device)), self.content_layers))
            # Styles of weight 0 in a blend add nothing and are not run.
            used = [(style, w) for style, w in zip(styles, s.blend_weights) if w > 0]
            style_features = [self.vgg(network_input(style.to(device)), s.style_layers) for style, _ in used]
            weights = [w for _, w in used]
            if self.style_layers:
                self.objective.set_style(style_features, weights)
            # Gram and MeanVar distances of each saved image to the style image (to the blend of the style
            # images), whatever loss the run used, so results of either loss can be judged by both
            # (unweighted sums over the style layers).
            self.distances = StyleDistances(style_features, weights) if used and s.style_layers else None
        self.scored_layers = list(dict.fromkeys([*self.objective.layers,
                                                 *(s.style_layers if self.distances else [])]))
        if self.start is None:
            first = self._start(content)
        else:  # the coarser scale's result at this size (bicubic), in [0, 1]
            with torch.no_grad():
                first = F.interpolate(self.start.detach(), size=tuple(self.shape[-2:]), mode="bicubic",
                                      align_corners=False).clamp_(0, 1)
        self.image = first.to(device).contiguous().requires_grad_(True)
        self.optimizer = self._optimizer()
        self.scale: list[float] = []  # the optimiser's loss factor, fixed at the first evaluation
        self.history: dict[str, list] = {"step": [], "time_s": []}
        self.snapshots: dict[int, torch.Tensor] = {}
        self.image_losses: dict[int, dict] = {}
        self.image_distances: dict[int, dict] = {}
        self.initial_loss: float | None = None
        self.last: dict = {}
        log.info("%s: %d steps, %s, size %dx%d, device %s, %s (%s), weights %s, layers %s", self.kind,
                 self.total_steps, s.optimizer, self.shape[-1], self.shape[-2], device, self.vgg.precision,
                 self.precision_reason, s.weights, self.objective.layers)

    def _start(self, content: torch.Tensor | None) -> torch.Tensor:
        init = self.settings.init
        if init == "content":
            return content.clone()
        if init == "noise":
            # Seeded on the CPU, so the start is the same whatever the device.
            shape = (self.shape[0], content.shape[1] if content is not None else 3, *self.shape[2:])
            return torch.randn(shape, generator=torch.Generator().manual_seed(self.settings.seed))
        image = images.load_image(init, tuple(self.shape[-2:]), self.settings.max_pixels)
        return colour.luminance(image) if self.settings.preserve_colors == "luminance" else image

    def _optimizer(self) -> torch.optim.Optimizer:
        skip_dynamo_import()
        if self.settings.optimizer == "lbfgs":
            # No early stop: a step count is a step count (see the module docstring on loss scale).
            # torch.optim.LBFGS(max_iter=1, tolerance 0)'s iterates, its direction from the compact
            # representation (a few matrix products) instead of the two-loop recursion (stylelab.engine.lbfgs).
            return CompactLBFGS([self.image], lr=self.lr, history_size=self.settings.history_size)
        return torch.optim.Adam([self.image], lr=self.lr)

    def _closure(self) -> torch.Tensor:
        """One evaluation: pixels clamped to [0, 1], the objective and its gradient, projected at the bounds and
        scaled as the optimiser sees it (the loss returned is scaled alike)."""
        image = self.image
        with torch.no_grad():
            image.clamp_(0, 1)
        self.optimizer.zero_grad(set_to_none=True)
        total, parts = self.objective(self.vgg(network_input(image), self.objective.layers), image)
        total.backward()
        if self.settings.bounds == "project":
            project_gradient_(image.detach(), image.grad)
        if not self.scale:
            self.scale.append(optimizer_scale(image.grad) if self.settings.optimizer == "lbfgs" else 1.0)
        if self.scale[0] != 1.0:
            image.grad.mul_(self.scale[0])
        self.last["total"], self.last["parts"] = total, parts
        return total.detach() * self.scale[0]

    def step(self, n: int, clock) -> dict[str, float]:
        self.optimizer.step(self._closure)
        return self._after_step(n, clock)

    def _after_step(self, n: int, clock) -> dict[str, float]:
        """After the optimiser's step n: the divergence check, the history, and the image at a saved step.

        One host sync for all of it: the step's losses come to the host together (on a recorded step), or the
        total alone."""
        saved = self.keep_images and n in self.save_steps
        recorded = n % self.settings.record_every == 0 or n == self.total_steps or saved
        values = _losses_dict(self.last["total"], self.last["parts"]) if recorded else None
        total = values["total"] if recorded else float(self.last["total"].detach())
        if not math.isfinite(total):
            values = values or _losses_dict(self.last["total"], self.last["parts"])
            raise runner.Diverged(_divergence_message(self.settings, n, values, self.lr))
        if self.initial_loss is None:
            self.initial_loss = total
        if recorded:
            self.history["step"].append(n)
            self.history["time_s"].append(round(clock(), 6))
            for key, value in values.items():
                self.history.setdefault(key, []).append(value)
        if saved:
            with torch.no_grad():
                optimised = self.image.detach().clamp(0, 1)
                self.snapshots[n] = self._output(optimised).to("cpu", copy=True)
            self.image_losses[n], self.image_distances[n] = self._score(optimised)
        return {"loss": total}

    def _output(self, optimised: torch.Tensor) -> torch.Tensor:
        """The image a saved step shows: the optimised one, or (luminance) its luminance in the content's colours.
        Its losses and distances are those of the optimised image, as the objective saw it."""
        if self.settings.preserve_colors == "luminance":
            return colour.with_content_colour(optimised, self.colour_content.to(optimised.device))
        return optimised

    def _score(self, img: torch.Tensor) -> tuple[dict, dict]:
        """A saved image's losses and its distances to the style image, from one forward pass."""
        with torch.no_grad():
            features = self.vgg(img, self.scored_layers)
            losses = _losses_dict(*self.objective(features, img))
            if self.distances is None:
                return losses, {}
            return losses, {k: float(v) for k, v in self.distances(features).items()}

    def state(self) -> dict | None:
        # The update of this step is in the image but its loss is only seen next step: a non-finite image
        # must not become the "last good" checkpoint.
        if not bool(torch.isfinite(self.image.detach()).all()):
            return None
        return {"image": self.image.detach(), "optimizer": self.optimizer.state_dict(), "scale": list(self.scale),
                "history": self.history, "snapshots": self.snapshots, "image_losses": self.image_losses,
                "image_distances": self.image_distances, "initial_loss": self.initial_loss}

    def load_state(self, saved: dict) -> None:
        with torch.no_grad():
            self.image.copy_(saved["image"].to(self.device))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scale[:] = saved["scale"]
        self.history, self.snapshots = saved["history"], saved["snapshots"]
        self.image_losses, self.image_distances = saved["image_losses"], saved["image_distances"]
        self.initial_loss = saved["initial_loss"]

    def finish(self, run: runner.RunInfo) -> TransferResult:
        s, last = self.settings, self.save_steps[-1]
        settings = dataclasses.replace(s, steps=self.save_steps, size=self.size, lr=self.lr, precision=self.precision,
                                       content_layers=self.content_layers, style_layers=self.style_layers)
        record = TransferRecord(
            kind=s.kind, settings=settings, image_size=[int(self.shape[-2]), int(self.shape[-1])],
            history=self.history,
            images={str(k): ImageEntry(f"step_{k}.png", self.image_losses[k], self.image_distances[k])
                    for k in self.save_steps},
            final_losses=self.image_losses[last], initial_loss=self.initial_loss,
            optimizer_scale=self.scale[0] if self.scale else 1.0,
            timing=Timing(steps=self.total_steps, time_per_step_s=round(run.time_per_step_s, 6),
                          setup_s=round(run.setup_s, 4), optimise_s=round(run.loop_s, 4)),
            precision=self.vgg.precision, precision_reason=self.precision_reason, weights=s.weights,
            seed=s.seed, **run.environment())
        return TransferResult(images=self.snapshots, record=record)


class CoarseToFine:
    """Coarse to fine as a runner task: the plain task at each scale in turn, each started from the one before
    (resized), sharing one network; the run's steps are the scales' steps one after another."""

    oom_advice = OOM_ADVICE

    def __init__(self, settings: TransferSettings):
        self.settings, self.kind = settings, settings.kind
        last = sorted(set(int(s) for s in settings.steps))[-1]
        self.coarse_steps = list(settings.scale_steps or [last] * (len(settings.scales) - 1))
        self.starts = [sum(self.coarse_steps[:i]) for i in range(len(settings.scales))]  # steps before each
        self.total_steps = self.starts[-1] + last
        self.scale_history: list[dict] = []

    def _scale(self, index: int, start: torch.Tensor | None, vgg: VGGFeatures | None) -> None:
        """Scale `index`'s plain task, set up (the last keeps the run's images; the others only their history)."""
        s, last = self.settings, index == len(self.settings.scales) - 1
        steps = s.steps if last else (self.coarse_steps[index],)
        self.index = index
        self.task = StyleTransfer(dataclasses.replace(s, size=s.scales[index], steps=steps, scales=None,
                                                      scale_steps=None), start=start, keep_images=last)
        self.task.vgg = vgg
        self.task.setup(self.device)
        log.info("scale %d of %d: %d px, %d steps", index + 1, len(s.scales), s.scales[index],
                 self.task.total_steps)

    def identity(self, device: torch.device) -> dict:
        return {**StyleTransfer(self.settings).identity(device), "task": "coarse to fine"}

    def describe(self) -> str:
        return self.task.describe() if hasattr(self, "task") else StyleTransfer(self.settings).describe()

    def setup(self, device: torch.device) -> None:
        self.device = device
        self._scale(0, None, None)

    def step(self, n: int, clock) -> dict[str, float]:
        task = self.task
        if n > self.starts[self.index] + task.total_steps:  # the next scale begins from this one's image
            self.scale_history.append({
                "size": task.size, "image_size": [int(task.shape[-2]), int(task.shape[-1])],
                "steps": task.total_steps, "history": task.history, "final_loss": task.history["total"][-1],
                "time_s": round(clock(), 6)})
            self._scale(self.index + 1, task.image.detach().clamp(0, 1), task.vgg)
        return self.task.step(n - self.starts[self.index], clock)

    def state(self) -> dict | None:
        state = self.task.state()
        return None if state is None else {"scale": self.index, "task": state, "scale_history": self.scale_history}

    def load_state(self, saved: dict) -> None:
        if saved["scale"] != self.index:  # saved at a later scale: build that scale first
            self._scale(saved["scale"], saved["task"]["image"], self.task.vgg)
        self.task.load_state(saved["task"])
        self.scale_history = list(saved["scale_history"])

    def finish(self, run: runner.RunInfo) -> TransferResult:
        result = self.task.finish(run)
        record = result.record
        record.settings = dataclasses.replace(record.settings, scales=list(self.settings.scales),
                                              scale_steps=self.coarse_steps or None)
        record.scale_history, record.timing.steps = self.scale_history, self.total_steps
        return result


def check_output_name(name: str, what: str) -> None:
    """An output name is a plain file name inside the output folder: no folder part, so it cannot escape it."""
    if not name or Path(name).name != name or name in (".", "..") or "\\" in name or "\0" in name:
        raise StylelabError(f"{what} '{name}' must be a plain file name (it goes inside --out DIR), without "
                            "a folder part.")


def check_image_name(image_name: str, n_images: int) -> None:
    check_output_name(image_name.replace("{step}", "0"), "image name")
    if "{step}" not in image_name and n_images > 1:
        raise StylelabError(f"image name '{image_name}' has no {{step}} but the run saves {n_images} steps; "
                            "put {step} in it.")


def write_outputs(result: TransferResult, out_dir: str | Path, image_name: str = "step_{step}.png",
                  record_name: str = records.RECORD_NAME) -> list[Path]:
    """Write one PNG per kept step (named by `image_name`, where {step} is the step), then the record.

    Each file is written atomically, and the record last, so a record means its images are complete.
    """
    out_dir = Path(out_dir)
    check_image_name(image_name, len(result.images))
    check_output_name(record_name, "record name")
    encoded = {step: images.png_bytes(img) for step, img in result.images.items()}
    written = []
    for step, data in sorted(encoded.items()):
        path = out_dir / image_name.format(step=step)
        write_bytes_atomic(path, data)
        written.append(path)
        result.record.images[str(step)].file = path.name
    result.record.outputs = [p.name for p in written] + [record_name]
    records.write_record(out_dir / record_name, result.record)
    return written + [out_dir / record_name]
