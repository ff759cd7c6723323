"""Sampling with style-loss guidance: classifier guidance with a style loss in place of a classifier.

At each step the clean estimate x0 = (x_t - sqrt(1 - abar_t) * eps) / sqrt(abar_t) of the UNet's noise prediction
eps (abar from the scheduler's `alphas_cumprod`: any variance-preserving scheduler works), decoded to [0, 1], is
scored by the VGG-19 style loss of Part 1. Its gradient g with respect to eps, divided by mean(|g|), shifts the
prediction, eps_guided = eps - s * g * sqrt(1 - abar_t), which moves x0 downhill on the style loss (x0 falls as
eps rises). With s = 0 nothing is computed: the image is the unguided one, bit for bit.

`GuidedSampling` (a runner task) is the loop `stylelab generate` and the pipelines' `__call__` both run; a resumed
run ends bit for bit as an uninterrupted one on a CPU.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, replace
from typing import Callable

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from stylelab.engine import images
from stylelab.run import runner, runtime
from stylelab.run.checkpoint import CheckpointPolicy
from stylelab.spec.errors import StylelabError
from stylelab.spec import files
from stylelab.spec.files import file_digest
from stylelab.engine.losses import StyleDistances
from stylelab.spec.records import GenerationRecord, ImageEntry, Timing
from stylelab.spec.settings import PRECISIONS, STYLE_LOSSES, GuidanceSettings
from stylelab.engine.vgg import VGGFeatures

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
assert tuple(DTYPES) == PRECISIONS, "one dtype per precision of stylelab.spec.settings"


def style_tensor(style: str | Image.Image, size: int, max_pixels: int | None) -> torch.Tensor:
    """The style image as a (1, 3, H, W) tensor in [0, 1], its short side `size` and its aspect ratio kept
    (the Gram and MeanVar statistics need no square image): a file as stylelab reads every image."""
    if isinstance(style, Image.Image):
        return images.pixels_to_tensor(np.array(files.resize(files.to_rgb(style), size), dtype=np.uint8))
    return images.load_image(style, size, max_pixels)


class StyleScorer:
    """The Part 1 style loss of an image in [0, 1] against one style image, at its own size."""

    def __init__(self, style: str | Image.Image, style_loss: str, layers, weights: str, device: torch.device,
                 size: int, max_pixels: int | None = images.DEFAULT_MAX_PIXELS, precision: str = "fp32"):
        self.vgg = VGGFeatures(weights, precision=precision).to(device)
        self.layers = list(layers)
        self.style_loss = style_loss
        target = style_tensor(style, size, max_pixels).to(device)
        self.style_size = list(target.shape[-2:])  # [height, width]
        with torch.no_grad():
            self.distances = StyleDistances(self.vgg(target, self.layers))

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both style losses of one image, from one forward of VGG-19."""
        return self.distances(self.vgg(image.float(), self.layers))


def clean_estimate(latents: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    return (latents - (1 - abar).sqrt() * eps) / abar.sqrt()


def style_gradient(loss: torch.Tensor, eps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """d loss / d eps divided by its mean magnitude. In fp16 a small loss's gradient underflows to zero in the
    VAE's backward (fp16 ends at 6e-8; on an H200 guidance then did nothing): the loss is first scaled by the
    power of two that brings it near 2**12, which the division undoes exactly, and by 2**8 less while that
    overflows."""
    scale = 2.0 ** (12 - math.frexp(float(loss.detach()))[1]) if dtype == torch.float16 else 1.0
    for _ in range(4):
        (grad,) = torch.autograd.grad(loss * scale if scale != 1.0 else loss, eps, retain_graph=scale != 1.0)
        if scale == 1.0 or bool(torch.isfinite(grad).all()):
            break
        scale /= 2.0 ** 8
    return grad / grad.abs().mean().clamp_min(torch.finfo(grad.dtype).tiny)


def _plain(value) -> bool:
    """A value a scheduler's state may hold and torch.load(weights_only=True) reads back."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, (torch.Tensor, int, float, bool, str, type(None)))


def _moved(value, like, device: torch.device):
    """A scheduler attribute from a checkpoint, on the device of the one it replaces (else the run's)."""
    if isinstance(value, torch.Tensor):
        return value.to(like.device if isinstance(like, torch.Tensor) else device)
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, None, device) for v in value)
    return value


class GuidedSampling:
    """The guided denoising loop of a pipeline as a runner task: one step is one scheduler step."""

    kind = "generation"
    oom_advice = ("Lower --size (memory grows with the number of pixels), use --precision fp16 or bf16 on a GPU, "
                  "leave the GPU to one job at a time, or use --device cpu.")

    def __init__(self, pipe: DiffusionPipeline, settings: GuidanceSettings,
                 style_image: str | Image.Image | None = None, generator: torch.Generator | None = None):
        self.pipe, self.settings, self.generator = pipe, settings, generator
        self.style_image = style_image if style_image is not None else (settings.style or None)
        self.size = settings.size or pipe.image_size
        self.total_steps = settings.steps
        if self.size % pipe.vae_scale_factor:
            raise StylelabError(f"size {self.size} is not a multiple of the model's latent factor "
                                f"{pipe.vae_scale_factor}.")

    def identity(self, device: torch.device) -> dict:
        decisive = {**asdict(self.settings), "size": self.size}
        decisive.pop("max_pixels")  # refuses inputs, changes no result
        # auto resolves by the machine: a checkpoint made in another precision is not resumed.
        decisive["precision"] = list(self.precisions(device)[::2])
        origin = self.pipe.origin
        return {"settings": decisive, "inputs": {"style": file_digest(self.settings.style)}, "device": str(device),
                "model": {"name": origin.name, "source": origin.source, "embedded": origin.embedded,
                          "kind": self.pipe.kind, "commit": origin.commit,
                          "files": [f["sha256"] for f in origin.files or []]}}

    def describe(self) -> str:
        return f"for a {self.size} x {self.size} image ({self.pipe.origin.name})"

    def precisions(self, device: torch.device) -> tuple[str, str, str]:
        """(the model's precision, why, the style loss's VGG-19 precision): auto as
        runtime.choose_diffusion_precision says; the VGG-19 network as Part 1's auto, fp32 when fp32 is asked."""
        precision, why = runtime.choose_diffusion_precision(self.settings.precision, device)
        vgg = "fp32" if self.settings.precision == "fp32" else runtime.choose_precision("auto", device)[0]
        return precision, why, vgg

    def setup(self, device: torch.device) -> None:
        s, pipe = self.settings, self.pipe
        self.precision, self.precision_reason, vgg_precision = self.precisions(device)
        self.device, self.dtype = device, DTYPES[self.precision]
        if device.type == "cpu" and self.dtype == torch.float16:
            raise StylelabError("fp16 needs a GPU; use --precision fp32 or bf16 on the CPU.")
        # Each model in the run's precision: a loaded one may come in its config's dtype (transformers loads
        # the text encoder so), whatever the others have. Only what differs is cast.
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module) and component.dtype != self.dtype:
                if getattr(component, "_keep_in_fp32_modules", None) == []:
                    # diffusers warns about modules to keep in fp32 whenever the list exists, even empty
                    torch.nn.Module.to(component, dtype=self.dtype)
                else:
                    component.to(dtype=self.dtype)
        pipe.to(device=device)
        self.scorer = None
        if self.style_image is not None:
            self.scorer = StyleScorer(self.style_image, s.style_loss, s.style_layers, s.weights, device, self.size,
                                      s.max_pixels, vgg_precision)
        pipe.scheduler.set_timesteps(s.steps, device=device)
        if self.generator is None:
            self.generator = torch.Generator("cpu").manual_seed(s.seed)
        cells = self.size // pipe.vae_scale_factor
        noise = torch.randn((1, pipe.unet.config.in_channels, cells, cells), generator=self.generator,
                            device=self.generator.device)
        self.latents = (noise * pipe.scheduler.init_noise_sigma).to(device, self.dtype)
        self.prompt_embeds = pipe.encode_prompt(s.prompt, device, s.cfg_scale != 1.0, s.negative_prompt)
        # Stochastic schedulers (DDPM) draw noise at every step: from our seeded generator, never the global one.
        takes_generator = "generator" in inspect.signature(pipe.scheduler.step).parameters
        self.step_options = {"generator": self.generator} if takes_generator else {}
        self.history = {"step": [], "timestep": [], "guided": [], "time_s": [],
                        **{f"style/{k}": [] for k in STYLE_LOSSES}}

    def step(self, n: int, clock: Callable[[], float]) -> dict[str, float]:
        s, pipe, index = self.settings, self.pipe, n - 1
        t = pipe.scheduler.timesteps[index]
        with torch.no_grad():
            eps = pipe.predict_noise(self.latents, t, self.prompt_embeds, s.cfg_scale)
        abar = pipe.scheduler.alphas_cumprod[int(t)].to(self.device, torch.float32)
        guided = s.guided_at(index)
        losses = {}
        if guided:  # eps shifted down the gradient of the guiding style loss of x0
            eps = eps.float().detach().requires_grad_(True)
            with torch.enable_grad():
                measured = self.scorer(pipe.decode(clean_estimate(self.latents.float(), eps, abar)))
                grad = style_gradient(measured[self.scorer.style_loss], eps, self.dtype)
            eps = (eps - s.guidance_factor * grad * (1 - abar).sqrt()).detach().to(self.dtype)
            losses = {k: float(v.detach()) for k, v in measured.items()}
        elif self.scorer is not None and index % s.track_every == 0:
            with torch.no_grad():
                x0_image = pipe.decode(clean_estimate(self.latents.float(), eps.float(), abar))
                losses = {k: float(v) for k, v in self.scorer(x0_image).items()}
        self.latents = pipe.scheduler.step(eps, t, self.latents, **self.step_options).prev_sample
        # The history has the style losses of x0 where they were measured, else None.
        noted = {"step": n, "timestep": int(t), "guided": guided, "time_s": round(clock(), 6),
                 **{f"style/{key}": losses.get(key) for key in STYLE_LOSSES}}
        for key, value in noted.items():
            self.history[key].append(value)
        loss = losses.get(s.style_loss)
        if loss is not None and not math.isfinite(loss):
            what = f"the style loss became {loss}"
        elif not bool(torch.isfinite(self.latents).all()):
            what = "the latents stopped being finite"
        else:
            return {} if loss is None else {f"x0 {s.style_loss} loss": loss}
        cause = ("the guidance factor is too large (lower --guidance-factor)" if guided else
                 "the model or precision overflows (use --precision fp32)")
        # The runner adds where the last good checkpoint is kept.
        raise runner.Diverged(f"{what} at step {n} of {self.total_steps}: sampling diverged, most likely because "
                              f"{cause}. Nothing was written.")

    def state(self) -> dict:
        # diffusers' schedulers keep their state in attributes that differ by scheduler (UniPC its last
        # predictions, DDPM a step index): every plain one is taken; the configuration comes from the model.
        scheduler = {name: value for name, value in vars(self.pipe.scheduler).items()
                     if name != "_internal_dict" and _plain(value)}
        return {"latents": self.latents, "generator": self.generator.get_state(), "scheduler": scheduler,
                "history": self.history}

    def load_state(self, state: dict) -> None:
        self.latents = state["latents"].to(self.device, self.dtype)
        self.generator.set_state(state["generator"])
        for name, value in state["scheduler"].items():
            setattr(self.pipe.scheduler, name, _moved(value, getattr(self.pipe.scheduler, name, None), self.device))
        self.history = state["history"]

    def finish(self, run: runner.RunInfo) -> tuple[torch.Tensor, GenerationRecord]:
        """The image, (1, 3, H, W) in [0, 1] on the CPU, and its record."""
        with torch.no_grad():
            image = self.pipe.decode(self.latents).clamp(0, 1).float().cpu()
            distances = {}
            if self.scorer is not None:
                distances = {k: float(v) for k, v in self.scorer(image.to(self.device)).items()}
        s, origin = self.settings, self.pipe.origin
        timing = run.timing(sampling_s=round(run.loop_s, 4), guided_steps=sum(self.history["guided"]))
        model = replace(origin, kind=self.pipe.kind, scheduler=type(self.pipe.scheduler).__name__,
                        files=list(origin.files or []))
        return image, GenerationRecord(
            kind="generation", settings=replace(s, size=self.size, precision=self.precision),
            image_size=[self.size, self.size],
            history=self.history, timing=Timing(**timing), model=model, style_distances=distances,
            style_size=self.scorer.style_size if self.scorer is not None else None,
            # The same shape as Part 1 records, so figures and the report read both alike.
            images={str(self.total_steps): ImageEntry(file="image.png", losses=distances, distances=distances)},
            precision=self.precision, precision_reason=self.precision_reason, weights=s.weights, seed=s.seed,
            **run.environment())


def sample(pipe: DiffusionPipeline, settings: GuidanceSettings, device: str = "auto", progress: bool = True,
           checkpoints: CheckpointPolicy | None = None, style_image: str | Image.Image | None = None,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, GenerationRecord]:
    """One guided sample from `pipe`: (image tensor (1, 3, H, W) in [0, 1], its record), checkpointed and resumed
    as `checkpoints` says. `style_image` (a path or a PIL image) stands in for `settings.style`, `generator` for
    the seed's generator."""
    settings.validate()
    task = GuidedSampling(pipe, settings, style_image, generator)
    (image, record), _ = runner.run_task(task, device=device, progress=progress, checkpoints=checkpoints)
    return image, record
