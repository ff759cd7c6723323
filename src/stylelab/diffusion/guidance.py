"""Sampling with style-loss guidance: classifier guidance with a style loss in place of a classifier.

At every step the UNet predicts the noise `eps` (without gradient; for Stable Diffusion as a conditional
and unconditional batch combined with classifier-free guidance). The clean-image estimate

    x0 = (x_t - sqrt(1 - abar_t) * eps) / sqrt(abar_t)

comes from the scheduler's `alphas_cumprod`, so any variance-preserving scheduler works. x0 is decoded by
the VAE (Stable Diffusion) or used as is (pixel-space DDPM), mapped to [0, 1], and scored by the VGG-19
style loss of Part 1 against the style image. The gradient g of that loss with respect to eps (a leaf,
detached from the UNet), divided by mean(|g|), shifts the prediction:

    eps_guided = eps - s * g * sqrt(1 - abar_t)

and the scheduler steps with eps_guided. Since x0 falls as eps rises, this moves x0 downhill on the style
loss. With s = 0 no guidance is computed at all, so the image is the unguided one, bit for bit.

Given a CheckpointPolicy, the sampler saves the latents, the scheduler's state (multistep schedulers keep
past predictions), the noise generator and the history every so often, and resumes from them with the same
result bit for bit on a CPU (stylelab.checkpoint).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .. import checkpoint, images, runtime
from ..checkpoint import CheckpointPolicy, RunStopped
from ..errors import StylelabError
from ..losses import STYLE_LOSSES, StyleDistances
from ..vgg import TUTORIAL_STYLE_LAYERS, VGGFeatures
from .models import DiffusionModel

log = logging.getLogger("stylelab.guidance")

PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class GuidanceSettings:
    prompt: str = "a cat"
    negative_prompt: str = ""
    steps: int = 100
    seed: int = 0
    size: int | None = None  # output size in pixels; None: the model's own
    cfg_scale: float = 7.5  # classifier-free guidance (Stable Diffusion only)
    style: str | None = None
    style_loss: str = "gram"
    guidance_factor: float = 0.0
    guidance_start: float = 0.0  # fraction of the schedule where guidance begins
    guidance_end: float = 1.0  # ... and where it ends
    guidance_every: int = 1  # guide every k-th step of the window
    style_layers: tuple[str, ...] = TUTORIAL_STYLE_LAYERS
    weights: str = "caffe"
    precision: str = "fp32"
    track_every: int = 1  # style loss of x0 in the record at every k-th step (costs a decode when unguided)
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS  # a style image above this is refused (None: no limit)

    def validate(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise StylelabError(f"steps must be a whole number >= 1, got {self.steps!r}.")
        if self.style_loss not in STYLE_LOSSES:
            raise StylelabError(f"unknown style loss '{self.style_loss}'; choose one of {', '.join(STYLE_LOSSES)}.")
        if not 0 <= self.guidance_factor < float("inf"):
            raise StylelabError(f"guidance factor must be a finite number >= 0, got {self.guidance_factor}.")
        if self.guidance_factor > 0 and not self.style:
            raise StylelabError("a style image is needed for guidance (--style IMG).")
        if not 0 <= self.guidance_start <= self.guidance_end <= 1:
            raise StylelabError("the guidance window needs 0 <= start <= end <= 1, got "
                                f"{self.guidance_start} .. {self.guidance_end}.")
        if self.guidance_every < 1 or self.track_every < 1:
            raise StylelabError("guidance_every and track_every must be >= 1.")
        if self.precision not in PRECISIONS:
            raise StylelabError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}.")
        if self.size is not None and (self.size < 8 or self.size % 8):
            raise StylelabError(f"size must be a multiple of 8 (at least 8), got {self.size}.")
        if self.size is not None and self.max_pixels is not None and self.size ** 2 > self.max_pixels:
            raise StylelabError(f"size {self.size} makes a {self.size} x {self.size} image "
                                f"({self.size ** 2 / 1e6:.3g} megapixels), above the limit of "
                                f"{self.max_pixels / 1e6:g} megapixels. Use a smaller --size, or raise the limit "
                                "(--max-pixels).")

    def guided_at(self, index: int) -> bool:
        """Whether step `index` (0-based) of `steps` is guided."""
        if self.guidance_factor == 0:
            return False
        fraction = index / self.steps
        inside = self.guidance_start <= fraction < self.guidance_end or (self.guidance_end == 1 and fraction >= 1)
        first = int(self.guidance_start * self.steps + 0.999999)
        return inside and (index - first) % self.guidance_every == 0


class StyleScorer:
    """The Part 1 style loss of an image in [0, 1] against one style image, at its own size."""

    def __init__(self, style_path: str, style_loss: str, layers, weights: str, device: torch.device, size,
                 max_pixels: int | None = images.DEFAULT_MAX_PIXELS):
        self.vgg = VGGFeatures(weights).to(device)
        self.layers = list(layers)
        self.style_loss = style_loss
        style = images.load_image(style_path, (size, size), max_pixels).to(device)
        with torch.no_grad():
            self.distances = StyleDistances(self.vgg(style, self.layers))

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both style losses of one image, from one forward of VGG-19."""
        return self.distances(self.vgg(image.float(), self.layers))


def alphas_bar(scheduler, t) -> torch.Tensor:
    return scheduler.alphas_cumprod[int(t)]


def clean_estimate(latents: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    return (latents - (1 - abar).sqrt() * eps) / abar.sqrt()


def to_image(model: DiffusionModel, x0: torch.Tensor) -> torch.Tensor:
    """Decode a clean estimate (latents for SD, pixels for DDPM) to an RGB image in [0, 1] (not clamped)."""
    if model.vae is not None:
        x0 = model.vae.decode(x0.to(model.vae.dtype) / model.vae.config.scaling_factor).sample
    return x0.float() / 2 + 0.5


def style_guidance(model: DiffusionModel, scorer: StyleScorer, latents: torch.Tensor, eps: torch.Tensor,
                   abar: torch.Tensor, factor: float) -> tuple[torch.Tensor, dict[str, float]]:
    """eps shifted down the guiding style loss's gradient; also returns both style losses of the current x0."""
    eps = eps.detach().requires_grad_(True)
    with torch.enable_grad():
        losses = scorer(to_image(model, clean_estimate(latents, eps, abar)))
        (grad,) = torch.autograd.grad(losses[scorer.style_loss], eps)
    grad = grad / grad.abs().mean().clamp_min(torch.finfo(grad.dtype).tiny)
    return (eps - factor * grad * (1 - abar).sqrt()).detach(), {k: float(v.detach()) for k, v in losses.items()}


@torch.no_grad()
def encode_prompt(model: DiffusionModel, prompt: str, negative: str, device) -> torch.Tensor:
    tokens = model.tokenizer([negative, prompt], padding="max_length", max_length=model.tokenizer.model_max_length
                             if model.tokenizer.model_max_length < 10_000 else 77, truncation=True, return_tensors="pt")
    return model.text_encoder(tokens.input_ids.to(device))[0]


# Types a scheduler's state may hold and torch.load(weights_only=True) reads back.
_PLAIN = (torch.Tensor, int, float, bool, str, type(None))


def _plain(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def scheduler_state(scheduler) -> dict:
    """A scheduler's mutable state: every plain attribute (step index, past model outputs, last sample...).

    diffusers' schedulers keep their state in attributes, and which ones differs by scheduler (UniPC keeps
    the last predictions for its multistep update, DDPM only a step index), so all plain ones are taken;
    the configuration is rebuilt from the model and is left out.
    """
    return {name: value for name, value in vars(scheduler).items()
            if name != "_internal_dict" and _plain(value)}


def restore_scheduler_state(scheduler, state: dict, device: torch.device) -> None:
    def move(value, like):
        if isinstance(value, torch.Tensor):
            return value.to(like.device if isinstance(like, torch.Tensor) else device)
        if isinstance(value, (list, tuple)):
            return type(value)(move(v, None) for v in value)
        return value

    for name, value in state.items():
        setattr(scheduler, name, move(value, getattr(scheduler, name, None)))


def sample(model: DiffusionModel, settings: GuidanceSettings, device: str = "auto", progress: bool = True,
           checkpoints: CheckpointPolicy | None = None):
    """Generate one image; returns (image tensor (1, 3, H, W) in [0, 1], record dict).

    With `checkpoints`, the state is saved as the policy says and a run with the same settings resumes from it.
    """
    settings.validate()
    t_start = time.perf_counter()
    device = runtime.resolve_device(device)
    dtype = _DTYPES[settings.precision]
    if device.type == "cpu" and dtype == torch.float16:
        raise StylelabError("fp16 needs a GPU; use --precision fp32 or bf16 on the CPU.")
    determinism = runtime.configure_determinism(device)
    size = settings.size or model.image_size
    factor = model.latent_factor
    if size % factor:
        raise StylelabError(f"size {size} is not a multiple of the model's latent factor {factor}.")
    store = None
    if checkpoints is not None:
        decisive = {**asdict(settings), "size": size}
        decisive.pop("max_pixels")  # refuses inputs, changes no result
        store = checkpoints.open({
            "kind": "generation", "settings": decisive,
            "model": {"name": model.name, "source": model.source, "embedded": model.embedded, "kind": model.kind},
            "inputs": {"style": checkpoint.file_digest(settings.style)}, "device": str(device)})
    advice = ("Lower --size (memory grows with the number of pixels), use --precision fp16 or bf16 on a GPU, "
              "leave the GPU to one job at a time, or use --device cpu.")
    with runtime.explain_out_of_memory(device, f"for a {size} x {size} image ({model.name})", advice):
        image, record = _sample(model, settings, device, dtype, size, store, progress, t_start)
    record["determinism"] = determinism
    if store is not None:
        checkpoints.finished(store)
    return image, record


def _sample(model: DiffusionModel, settings: GuidanceSettings, device: torch.device, dtype, size: int, store,
            progress: bool, t_start: float):
    model.to(device, dtype)
    factor = model.latent_factor
    scorer = None
    if settings.style:
        scorer = StyleScorer(settings.style, settings.style_loss, settings.style_layers, settings.weights, device,
                             size, settings.max_pixels)

    scheduler = model.scheduler
    scheduler.set_timesteps(settings.steps, device=device)
    channels = model.unet.config.in_channels
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    latents = torch.randn((1, channels, size // factor, size // factor), generator=generator)
    latents = (latents * scheduler.init_noise_sigma).to(device, dtype)
    cfg = model.kind == "sd" and settings.cfg_scale != 1.0
    embeddings = encode_prompt(model, settings.prompt, settings.negative_prompt, device) if model.kind == "sd" else None
    if embeddings is not None and not cfg:
        embeddings = embeddings[1:]

    # Stochastic schedulers (DDPM) draw noise at every step: from our seeded generator, never the global one.
    step_options = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    history = {"step": [], "timestep": [], "guided": [], "time_s": [], **{f"style/{k}": [] for k in STYLE_LOSSES}}
    timesteps = scheduler.timesteps
    first, elapsed_before, resumed_from = 0, 0.0, []
    saved = store.load() if store is not None else None
    if saved is not None:
        latents = saved["latents"].to(device, dtype)
        generator.set_state(saved["generator"])
        restore_scheduler_state(scheduler, saved["scheduler"], device)
        history, first, elapsed_before = saved["history"], saved["step"], saved["elapsed_s"]
        resumed_from = [*saved["resumed_from"], saved["step"]]
        checkpoint.set_rng_state(saved["rng"])
        log.info("resuming generation from its checkpoint at step %d of %d (%s)", first, len(timesteps),
                 store.folder)

    setup_s = time.perf_counter() - t_start
    t_loop = time.perf_counter()
    bar = tqdm(total=len(timesteps), initial=first, desc="guided" if settings.guidance_factor else "sampling",
               unit="step", disable=not progress, leave=False, mininterval=0.5)
    log_every = max(1, len(timesteps) // 10)
    for index in range(first, len(timesteps)):
        t = timesteps[index]
        with torch.no_grad():
            batch = torch.cat([latents] * 2) if cfg else latents
            batch = scheduler.scale_model_input(batch, t)
            if model.kind == "sd":
                eps = model.unet(batch, t, encoder_hidden_states=embeddings).sample
            else:
                eps = model.unet(batch, t).sample
            if cfg:
                eps_uncond, eps_text = eps.chunk(2)
                eps = eps_uncond + settings.cfg_scale * (eps_text - eps_uncond)
        abar = alphas_bar(scheduler, t).to(device, torch.float32)
        guided = settings.guided_at(index)
        losses = {}
        if guided:
            eps, losses = style_guidance(model, scorer, latents.float(), eps.float(), abar, settings.guidance_factor)
            eps = eps.to(dtype)
        elif scorer is not None and index % settings.track_every == 0:
            with torch.no_grad():
                x0_image = to_image(model, clean_estimate(latents.float(), eps.float(), abar))
                losses = {k: float(v) for k, v in scorer(x0_image).items()}
        latents = scheduler.step(eps, t, latents, **step_options).prev_sample
        history["step"].append(index + 1)
        history["timestep"].append(int(t))
        history["guided"].append(guided)
        for key in STYLE_LOSSES:
            history[f"style/{key}"].append(losses.get(key))
        history["time_s"].append(round(elapsed_before + time.perf_counter() - t_loop, 6))
        loss = losses.get(settings.style_loss)
        if (loss is not None and not math.isfinite(loss)) or not bool(torch.isfinite(latents).all()):
            what = f"the style loss became {loss}" if loss is not None and not math.isfinite(loss) else \
                "the latents stopped being finite"
            cause = ("the guidance factor is too large (lower --guidance-factor)" if guided else
                     "the model or precision overflows (use --precision fp32)")
            note = store.kept_note() if store is not None else ""
            raise StylelabError(f"{what} at step {index + 1} of {len(timesteps)}: sampling diverged, most likely "
                                f"because {cause}. Nothing was written. {note}".rstrip())
        bar.update(1)
        if (index + 1) % log_every == 0:
            log.info("step %d/%d t=%d%s", index + 1, len(timesteps), int(t),
                     f" style loss of x0 {loss:.4g}" if loss is not None else "")
        done = index + 1
        if store is not None and done < len(timesteps) and (store.due(done) or checkpoint.stop_requested()):
            store.save(done, {"latents": latents, "generator": generator.get_state(),
                              "scheduler": scheduler_state(scheduler), "history": history,
                              "elapsed_s": elapsed_before + time.perf_counter() - t_loop,
                              "resumed_from": resumed_from, "rng": checkpoint.rng_state()})
        if checkpoint.stop_requested() and done < len(timesteps):
            # Name the checkpoint only if this step's was written (a save can fail, e.g. a full disk).
            raise RunStopped(done, len(timesteps),
                             store.folder if store is not None and store.saved_step == done else None)
    bar.close()
    loop_s = elapsed_before + time.perf_counter() - t_loop
    with torch.no_grad():
        image = to_image(model, latents.float() if model.vae is None else latents).clamp(0, 1).float().cpu()
    distances = {}
    if scorer is not None:
        with torch.no_grad():
            distances = {k: float(v) for k, v in scorer(image.to(device)).items()}
    n_guided = sum(history["guided"])
    record = {
        "kind": "generation",
        "settings": {**asdict(settings), "style_layers": list(settings.style_layers), "size": size},
        "model": {"name": model.name, "kind": model.kind, "source": model.source, "embedded": model.embedded,
                  "fallback_reason": model.fallback_reason, "scheduler": type(scheduler).__name__},
        "image_size": [size, size],
        "history": history,
        "style_distances": distances,
        # The same shape as Part 1 records, so figures and the report read both alike.
        "images": {str(len(timesteps)): {"file": "image.png", "losses": distances}},
        "timing": {"setup_s": round(setup_s, 4), "sampling_s": round(loop_s, 4),
                   "time_per_step_s": round(loop_s / len(timesteps), 6), "steps": len(timesteps),
                   "guided_steps": n_guided},
        "resumed_from": resumed_from,
        "device": str(device),
        "device_name": runtime.device_name(device),
        "precision": settings.precision,
        "weights": settings.weights,
        "seed": settings.seed,
        "versions": runtime.package_versions(),
    }
    return image, record
