"""The optimisation loop behind Part 1: feature inversion, texture synthesis and style transfer.

One step is one optimiser iteration, counted exactly: L-BFGS runs with max_iter=1, so each step is one
evaluation of the objective and one update (the PyTorch tutorial instead counted closure calls in chunks of
up to 20, so its "300 steps" were 300 to 320 evaluations). Pixels are clamped to [0, 1] before each
evaluation, as in the tutorial. A run that lists several steps (300 and 1000) keeps the image at each, so
the 300-step image of a 1000-step run is the image a 300-step run ends with.

Bounds. The tutorial only clamps (`bounds="clamp"`). L-BFGS then keeps proposing moves past the bounds for
pixels that sit on them; the clamp undoes the moves, the curvature pairs L-BFGS stores stop describing the
function, and late in a run the loss can jump by four orders of magnitude (seen here at 128 px with the
original VGG weights: 2.3 at step 270, 3.8e4 at step 285, an image of pure noise). `bounds="project"`
(default) also zeroes the gradient of every pixel that sits on a bound and is pushed outward, the active-set
rule of bound-constrained L-BFGS; the same run then falls steadily (2.15 at step 400).

Interruptions. Given a CheckpointPolicy (the CLI always gives one), the loop saves its whole state every so
often and resumes from it when started again with the same settings, ending with the same image bit for
bit on a CPU (stylelab.checkpoint). A loss that stops being finite ends the run with a message naming the
step and the likely cause, and keeps the last good checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from . import checkpoint, images, records, runtime
from .checkpoint import CheckpointPolicy, RunStopped
from .errors import StylelabError
from .losses import STYLE_LOSSES, Objective, StyleDistances
from .vgg import (LAYERS, TUTORIAL_CONTENT_LAYERS, TUTORIAL_STYLE_LAYERS, WEIGHTS_SOURCES, VGGFeatures,
                  resolve_layer, tutorial_name)

log = logging.getLogger("stylelab.transfer")

OPTIMIZERS = ("lbfgs", "adam")
BOUNDS = ("project", "clamp")
INITS = ("content", "noise")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}


@dataclass
class TransferSettings:
    """Everything that decides a run's result. `kind` only names the experiment in records."""

    content: str | None = None
    style: str | None = None
    steps: Sequence[int] = (300,)
    size: int | str = "auto"
    style_loss: str = "gram"
    style_weight: float = 1e6
    content_weight: float = 1.0
    tv_weight: float = 0.0
    content_layers: Sequence[str] = TUTORIAL_CONTENT_LAYERS
    style_layers: Sequence[str] = TUTORIAL_STYLE_LAYERS
    init: str = "content"
    seed: int = 0
    weights: str = "caffe"
    device: str = "auto"
    optimizer: str = "lbfgs"
    lr: float | None = None
    history_size: int = 100
    bounds: str = "project"
    record_every: int = 1
    kind: str = "transfer"
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS  # input images above this are refused (None: no limit)

    def validate(self) -> None:
        """Check every setting before any work, so a mistake costs nothing and leaves nothing behind."""
        steps = list(self.steps)
        if not steps or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps):
            raise StylelabError(f"steps must be positive whole numbers, got {steps}.")
        if self.style_loss not in STYLE_LOSSES:
            raise StylelabError(f"unknown style loss '{self.style_loss}'; choose one of {', '.join(STYLE_LOSSES)}.")
        if self.optimizer not in OPTIMIZERS:
            raise StylelabError(f"unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
        if self.bounds not in BOUNDS:
            raise StylelabError(f"unknown bounds mode '{self.bounds}'; choose one of {', '.join(BOUNDS)}.")
        if self.weights not in WEIGHTS_SOURCES:
            raise StylelabError(f"unknown weights source '{self.weights}'; choose one of {', '.join(WEIGHTS_SOURCES)}.")
        for name, value in (("content weight", self.content_weight), ("style weight", self.style_weight),
                            ("tv weight", self.tv_weight)):
            if not value >= 0 or value == float("inf"):
                raise StylelabError(f"{name} must be a finite number >= 0, got {value}.")
        if self.content_weight == 0 and self.style_weight == 0:
            raise StylelabError("content weight and style weight are both 0: there is nothing to optimise.")
        if self.size != "auto" and (not isinstance(self.size, int) or self.size < 8):
            raise StylelabError(f"size must be 'auto' or a whole number of pixels >= 8, got {self.size!r}.")
        if self.init not in INITS and not Path(self.init).exists():
            raise StylelabError(f"init must be 'content', 'noise' or an image file; '{self.init}' is neither.")
        if self.content_weight > 0 and not self.content:
            raise StylelabError("a content image is needed when the content weight is above 0 (--content IMG).")
        if self.content_weight > 0 and not self.content_layers:
            raise StylelabError("content weight above 0 but no content layers given.")
        if self.style_weight > 0 and not self.style:
            raise StylelabError("a style image is needed when the style weight is above 0 (--style IMG).")
        if self.style_weight > 0 and not self.style_layers:
            raise StylelabError("style weight above 0 but no style layers given.")
        if self.init == "content" and not self.content:
            raise StylelabError("init 'content' needs a content image; use --init noise.")
        if self.record_every < 1:
            raise StylelabError(f"record_every must be >= 1, got {self.record_every}.")
        if self.history_size < 1:
            raise StylelabError(f"history_size must be >= 1, got {self.history_size}.")
        if self.lr is not None and not 0 < self.lr < float("inf"):
            raise StylelabError(f"the learning rate must be a finite number above 0, got {self.lr}.")
        # Layer names: resolving raises the error that lists the valid ones.
        self.content_layers = [tutorial_name(n) for n in self.content_layers]
        self.style_layers = [tutorial_name(n) for n in self.style_layers]


@dataclass
class TransferResult:
    images: dict[int, torch.Tensor]
    record: dict = field(default_factory=dict)


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

    torch's L-BFGS is invariant to a constant factor on the loss except through absolute thresholds: its
    first step is min(1, 1/|g|_1) * lr, and it keeps a curvature pair only when s.y > 1e-10. A loss whose
    gradient is tiny (a Gram loss at pool_16 is about 1e-11) therefore never moves. Scaling it so that
    |g|_1 = 1 puts it where L-BFGS works, and leaves every run with |g|_1 >= 1 exactly as it was.
    """
    norm = float(grad.abs().sum())
    return 1.0 / norm if 0.0 < norm < 1.0 else 1.0


@torch.no_grad()
def project_gradient_(image: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Zero, in place, the gradient of pixels on a bound of [0, 1] that a descent step would push outside."""
    return grad.masked_fill_(((image <= 0) & (grad > 0)) | ((image >= 1) & (grad < 0)), 0.0)


def load_inputs(settings: TransferSettings, size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Content at `size` (short side); style at the content's exact size, or at `size` when there is no content."""
    limit = settings.max_pixels
    content = images.load_image(settings.content, size, limit) if settings.content else None
    style = None
    if settings.style and settings.style_weight > 0:
        style = images.load_image(settings.style, tuple(content.shape[-2:]) if content is not None else size, limit)
    return content, style


def check_fits_layers(height: int, width: int, layers: Sequence[str]) -> None:
    """Refuse an image that the poolings before the deepest layer would halve to nothing.

    Each 2 x 2 max pool halves the size (rounding down); after p of them a side below 2**p pixels is gone and
    the network fails deep inside with a shape error. Saying so up front names the fix.
    """
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


def run_transfer(settings: TransferSettings, progress: bool = True,
                 checkpoints: CheckpointPolicy | None = None) -> TransferResult:
    """Run the optimisation; with `checkpoints`, save its state as the policy says and resume from it."""
    settings.validate()
    t_start = time.perf_counter()
    device = runtime.resolve_device(settings.device)
    size = runtime.auto_size(device) if settings.size == "auto" else settings.size
    content, style = load_inputs(settings, size)
    shape = (content if content is not None else style).shape
    used = [*(settings.content_layers if settings.content_weight > 0 else []),
            *(settings.style_layers if settings.style_weight > 0 else [])]
    check_fits_layers(int(shape[-2]), int(shape[-1]), used)
    runtime.seed_everything(settings.seed)
    determinism = runtime.configure_determinism(device)
    lr = settings.lr if settings.lr is not None else DEFAULT_LR[settings.optimizer]

    store = None
    if checkpoints is not None:
        store = checkpoints.open({
            "kind": settings.kind, "settings": _identity(settings, size, lr), "device": str(device),
            "inputs": {name: checkpoint.file_digest(path) for name, path in
                       (("content", settings.content), ("style", settings.style), ("init", settings.init))
                       if path and (name != "init" or path not in INITS)}})

    def what() -> str:
        return f"for a {shape[-1]} x {shape[-2]} image ({settings.kind}, {settings.optimizer})"

    advice = ("Lower --size (memory grows with the number of pixels), leave the GPU to one job at a time, "
              "or use --device cpu.")
    with runtime.explain_out_of_memory(device, what, advice):
        result = _optimise(settings, device, size, lr, content, style, shape, store, progress, t_start)
    result.record["determinism"] = determinism
    if store is not None:
        checkpoints.finished(store)
    return result


def _identity(settings: TransferSettings, size: int, lr: float) -> dict:
    """The settings that decide the result (not the pixel limit, which only refuses inputs)."""
    values = {**asdict(settings), "size": size, "lr": lr, "steps": sorted(set(int(s) for s in settings.steps))}
    values.pop("max_pixels")
    return values


def _optimise(settings: TransferSettings, device: torch.device, size: int, lr: float, content, style, shape,
              store, progress: bool, t_start: float) -> TransferResult:
    vgg = VGGFeatures(settings.weights, seed=settings.seed).to(device)
    objective = Objective(settings.style_loss, settings.content_weight, settings.style_weight, settings.tv_weight)
    content_layers = settings.content_layers if settings.content_weight > 0 else []
    style_layers = settings.style_layers if settings.style_weight > 0 else []
    with torch.no_grad():
        if content_layers:
            objective.set_content(vgg(content.to(device), content_layers))
        if style_layers:
            objective.set_style(vgg(style.to(device), style_layers))
    layers = objective.layers

    saved = store.load() if store is not None else None
    if saved is not None:
        start = saved["image"]
    elif settings.init == "content":
        start = content.clone()
    elif settings.init == "noise":
        # Seeded on the CPU, so the start is the same whatever the device.
        start = torch.randn(shape, generator=torch.Generator().manual_seed(settings.seed))
    else:
        start = images.load_image(settings.init, tuple(shape[-2:]), settings.max_pixels)
    image = start.to(device).contiguous().requires_grad_(True)

    if settings.optimizer == "lbfgs":
        # No early stop: a step count is a step count (see the module docstring on loss scale).
        optimizer = torch.optim.LBFGS([image], lr=lr, max_iter=1, history_size=settings.history_size,
                                      tolerance_grad=0.0, tolerance_change=0.0)
    else:
        optimizer = torch.optim.Adam([image], lr=lr)

    last: dict = {}
    project = settings.bounds == "project"
    scale: list[float] = []  # the optimiser's loss factor, fixed at the first evaluation

    def closure():
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad(set_to_none=True)
        total, parts = objective(vgg(image, layers), image)
        total.backward()
        if project:
            project_gradient_(image.detach(), image.grad)
        if not scale:
            scale.append(optimizer_scale(image.grad) if settings.optimizer == "lbfgs" else 1.0)
        if scale[0] != 1.0:
            image.grad.mul_(scale[0])
        last["total"], last["parts"] = total, parts
        return total.detach() * scale[0]

    # Gram and MeanVar distances of each saved image to the style image, whatever loss the run used, so
    # results of either loss can be judged by both (unweighted sums over the style layers).
    style_distances = None
    if style is not None and settings.style_layers:
        with torch.no_grad():
            style_distances = StyleDistances(vgg(style.to(device), settings.style_layers))
    scored_layers = list(dict.fromkeys([*layers, *(settings.style_layers if style_distances else [])]))

    def score(img: torch.Tensor) -> tuple[dict, dict]:
        """A saved image's losses and its distances to the style image, from one forward pass."""
        with torch.no_grad():
            features = vgg(img, scored_layers)
            losses = _losses_dict(*objective(features, img))
            if style_distances is None:
                return losses, {}
            return losses, {k: float(v) for k, v in style_distances(features).items()}

    save_steps = sorted(set(int(s) for s in settings.steps))
    n_steps = save_steps[-1]
    history: dict[str, list] = {"step": [], "time_s": []}
    snapshots: dict[int, torch.Tensor] = {}
    image_losses: dict[int, dict] = {}
    image_distances: dict[int, dict] = {}
    first_step, elapsed_before, resumed_from = 1, 0.0, []
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scale[:] = saved["scale"]
        history, image_losses, image_distances = saved["history"], saved["image_losses"], saved["image_distances"]
        snapshots = saved["snapshots"]
        first_step, elapsed_before = saved["step"] + 1, saved["elapsed_s"]
        resumed_from = [*saved["resumed_from"], saved["step"]]
        checkpoint.set_rng_state(saved["rng"])
        log.info("resuming %s from its checkpoint at step %d of %d (%s)", settings.kind, saved["step"], n_steps,
                 store.folder)
        if saved.get("threads") != torch.get_num_threads():
            log.warning("the checkpoint was written with %s threads and this run has %d: on a CPU the result "
                        "may differ from an uninterrupted run in the last bits", saved.get("threads"),
                        torch.get_num_threads())

    def state(step: int) -> dict:
        """Everything the remaining steps read, so a resumed run computes exactly what this one would."""
        return {"image": image.detach(), "optimizer": optimizer.state_dict(), "scale": list(scale),
                "history": history, "snapshots": snapshots, "image_losses": image_losses,
                "image_distances": image_distances, "elapsed_s": elapsed_before + time.perf_counter() - t_loop,
                "resumed_from": resumed_from, "rng": checkpoint.rng_state(), "threads": torch.get_num_threads()}

    t_setup = time.perf_counter() - t_start
    log.info("%s: %d steps, %s, size %dx%d, device %s, weights %s, layers %s", settings.kind, n_steps,
             settings.optimizer, shape[-1], shape[-2], device, settings.weights, layers)
    log_every = max(1, n_steps // 10)
    t_loop = time.perf_counter()
    bar = tqdm(range(first_step, n_steps + 1), desc=settings.kind, unit="step", disable=not progress,
               mininterval=0.5, dynamic_ncols=True, leave=False, initial=first_step - 1, total=n_steps)
    for step in bar:
        optimizer.step(closure)
        total = float(last["total"].detach())
        if not math.isfinite(total):
            values = _losses_dict(last["total"], last["parts"])
            note = store.kept_note() if store is not None else ""
            raise StylelabError(f"{_divergence_message(settings, step, values, lr)} {note}".rstrip())
        if step % settings.record_every == 0 or step == n_steps or step in save_steps:
            values = _losses_dict(last["total"], last["parts"])
            history["step"].append(step)
            history["time_s"].append(round(elapsed_before + time.perf_counter() - t_loop, 6))
            for key, value in values.items():
                history.setdefault(key, []).append(value)
            bar.set_postfix(loss=f"{values['total']:.4g}", refresh=False)
        if step % log_every == 0 or step == n_steps:
            log.info("step %d/%d total loss %.6g", step, n_steps, total)
        if step in save_steps:
            with torch.no_grad():
                snapshots[step] = image.detach().clamp(0, 1).to("cpu", copy=True)
            image_losses[step], image_distances[step] = score(snapshots[step].to(device))
        if store is not None and step < n_steps and (store.due(step) or checkpoint.stop_requested()):
            # The update of this step is in `image` but its loss is only seen next step: a non-finite
            # image must not become the "last good" checkpoint.
            if bool(torch.isfinite(image.detach()).all()):
                store.save(step, state(step))
        if checkpoint.stop_requested() and step < n_steps:
            raise RunStopped(step, n_steps, store.folder if store is not None and store.saved_step == step else None)
    bar.close()
    loop_s = elapsed_before + time.perf_counter() - t_loop

    record = {
        "kind": settings.kind,
        "settings": {**asdict(settings), "steps": save_steps, "size": size, "lr": lr,
                     "content_layers": content_layers, "style_layers": style_layers},
        "image_size": [int(shape[-2]), int(shape[-1])],
        "history": history,
        "images": {str(s): {"file": f"step_{s}.png", "losses": image_losses[s], "distances": image_distances[s]}
                   for s in save_steps},
        "final_losses": image_losses[n_steps],
        "initial_loss": history["total"][0],
        "optimizer_scale": scale[0] if scale else 1.0,
        "timing": {"setup_s": round(t_setup, 4), "optimise_s": round(loop_s, 4),
                   "time_per_step_s": round(loop_s / n_steps, 6), "steps": n_steps},
        "resumed_from": resumed_from,
        "device": str(device),
        "device_name": runtime.device_name(device),
        "precision": "fp32",
        "weights": settings.weights,
        "seed": settings.seed,
        "versions": runtime.package_versions(),
    }
    return TransferResult(images=snapshots, record=record)


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
        images.write_bytes_atomic(path, data)
        written.append(path)
        result.record["images"][str(step)]["file"] = path.name
    result.record["outputs"] = [p.name for p in written] + [record_name]
    records.write_record(out_dir / record_name, result.record)
    return written + [out_dir / record_name]


def feature_inversion(content: str, layer: str, **options) -> TransferSettings:
    """Settings that reconstruct `content` from one layer's features, starting from noise."""
    options = {"init": "noise", "steps": (1000,), **options}
    return TransferSettings(content=content, style=None, content_layers=[layer], style_layers=[],
                            content_weight=options.pop("content_weight", 1.0), style_weight=0.0,
                            kind="inversion", **options)


def texture_synthesis(style: str, layer: str, **options) -> TransferSettings:
    """Settings that synthesise a texture matching one layer's style statistics, starting from noise."""
    options = {"init": "noise", "steps": (1000,), **options}
    return TransferSettings(content=None, style=style, content_layers=[], style_layers=[layer],
                            content_weight=0.0, style_weight=options.pop("style_weight", 1e6),
                            kind="texture", **options)
