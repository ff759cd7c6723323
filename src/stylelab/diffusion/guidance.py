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

The denoising loop is `GuidedSampling`, a task of stylelab.run.runner (which owns device, determinism,
checkpoints, progress, divergence and timing). Its state for a checkpoint is the latents, the scheduler's
state (multistep schedulers keep past predictions), the noise generator and the history, so a resumed run
ends bit for bit where an uninterrupted one does on a CPU. Both `stylelab generate` (through `generate`)
and the pipelines' `__call__` (through `sample`) run it.
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

Pipeline = DiffusionPipeline  # a StyleGuidedStableDiffusionPipeline or StyleGuidedDDPMPipeline

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
assert tuple(DTYPES) == PRECISIONS, "one dtype per precision of stylelab.spec.settings"
OOM_ADVICE = ("Lower --size (memory grows with the number of pixels), use --precision fp16 or bf16 on a GPU, "
              "leave the GPU to one job at a time, or use --device cpu.")


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


def alphas_bar(scheduler, t) -> torch.Tensor:
    return scheduler.alphas_cumprod[int(t)]


def clean_estimate(latents: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    return (latents - (1 - abar).sqrt() * eps) / abar.sqrt()


def style_guidance(eps: torch.Tensor, latents: torch.Tensor, abar: torch.Tensor, factor: float,
                   decode: Callable[[torch.Tensor], torch.Tensor],
                   scorer: StyleScorer) -> tuple[torch.Tensor, dict[str, float]]:
    """The guided noise prediction: eps shifted down the gradient of the guiding style loss of x0.

    `decode` maps a clean estimate to an image in [0, 1]. Also returns both style losses of that x0.
    """
    eps = eps.detach().requires_grad_(True)
    with torch.enable_grad():
        losses = scorer(decode(clean_estimate(latents, eps, abar)))
        (grad,) = torch.autograd.grad(losses[scorer.style_loss], eps)
    grad = grad / grad.abs().mean().clamp_min(torch.finfo(grad.dtype).tiny)
    return (eps - factor * grad * (1 - abar).sqrt()).detach(), {k: float(v.detach()) for k, v in losses.items()}


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


def divergence(n: int, total: int, loss: float | None, latents: torch.Tensor, guided: bool) -> str | None:
    """Why step n of `total` diverged (what stopped being finite, the likely cause), or None while all is well."""
    if loss is not None and not math.isfinite(loss):
        what = f"the style loss became {loss}"
    elif not bool(torch.isfinite(latents).all()):
        what = "the latents stopped being finite"
    else:
        return None
    cause = ("the guidance factor is too large (lower --guidance-factor)" if guided else
             "the model or precision overflows (use --precision fp32)")
    return f"{what} at step {n} of {total}: sampling diverged, most likely because {cause}. Nothing was written."


class GuidedSampling:
    """The guided denoising loop of a pipeline as a runner task: one step is one scheduler step."""

    kind = "generation"
    oom_advice = OOM_ADVICE

    def __init__(self, pipe: Pipeline, settings: GuidanceSettings, style_image: str | Image.Image | None = None,
                 generator: torch.Generator | None = None):
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
        abar = alphas_bar(pipe.scheduler, t).to(self.device, torch.float32)
        guided = s.guided_at(index)
        losses = {}
        if guided:
            eps, losses = style_guidance(eps.float(), self.latents.float(), abar, s.guidance_factor, pipe.decode,
                                         self.scorer)
            eps = eps.to(self.dtype)
        elif self.scorer is not None and index % s.track_every == 0:
            with torch.no_grad():
                x0_image = pipe.decode(clean_estimate(self.latents.float(), eps.float(), abar))
                losses = {k: float(v) for k, v in self.scorer(x0_image).items()}
        self.latents = pipe.scheduler.step(eps, t, self.latents, **self.step_options).prev_sample
        self._note(n, int(t), guided, losses, clock())
        loss = losses.get(s.style_loss)
        problem = divergence(n, self.total_steps, loss, self.latents, guided)
        if problem is not None:
            raise runner.Diverged(problem)  # the runner adds where the last good checkpoint is kept
        return {} if loss is None else {f"x0 {s.style_loss} loss": loss}

    def _note(self, n: int, timestep: int, guided: bool, losses: dict[str, float], elapsed_s: float) -> None:
        """Step n in the history (the style losses of x0 where they were measured, else None)."""
        self.history["step"].append(n)
        self.history["timestep"].append(timestep)
        self.history["guided"].append(guided)
        for key in STYLE_LOSSES:
            self.history[f"style/{key}"].append(losses.get(key))
        self.history["time_s"].append(round(elapsed_s, 6))

    def state(self) -> dict:
        return {"latents": self.latents, "generator": self.generator.get_state(),
                "scheduler": scheduler_state(self.pipe.scheduler), "history": self.history}

    def load_state(self, state: dict) -> None:
        self.latents = state["latents"].to(self.device, self.dtype)
        self.generator.set_state(state["generator"])
        restore_scheduler_state(self.pipe.scheduler, state["scheduler"], self.device)
        self.history = state["history"]

    def finish(self, run: runner.RunInfo) -> tuple[torch.Tensor, GenerationRecord]:
        """The image, (1, 3, H, W) in [0, 1] on the CPU, and its record."""
        with torch.no_grad():
            image = self.pipe.decode(self.latents).clamp(0, 1).float().cpu()
            distances = {}
            if self.scorer is not None:
                distances = {k: float(v) for k, v in self.scorer(image.to(self.device)).items()}
        return image, self.record(run, distances)

    def record(self, run: runner.RunInfo, distances: dict[str, float]) -> GenerationRecord:
        s, origin = self.settings, self.pipe.origin
        timing = run.timing(sampling_s=round(run.loop_s, 4), guided_steps=sum(self.history["guided"]))
        model = replace(origin, kind=self.pipe.kind, scheduler=type(self.pipe.scheduler).__name__,
                        files=list(origin.files or []))
        return GenerationRecord(
            kind="generation", settings=replace(s, size=self.size, precision=self.precision),
            image_size=[self.size, self.size],
            history=self.history, timing=Timing(**timing), model=model, style_distances=distances,
            style_size=self.scorer.style_size if self.scorer is not None else None,
            # The same shape as Part 1 records, so figures and the report read both alike.
            images={str(self.total_steps): ImageEntry(file="image.png", losses=distances, distances=distances)},
            precision=self.precision, precision_reason=self.precision_reason, weights=s.weights, seed=s.seed,
            **run.environment())


def sample(pipe: Pipeline, settings: GuidanceSettings, device: str = "auto", progress: bool = True,
           checkpoints: CheckpointPolicy | None = None, style_image: str | Image.Image | None = None,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, GenerationRecord]:
    """One guided sample from `pipe`: (image tensor (1, 3, H, W) in [0, 1], its record).

    With `checkpoints`, the state is saved as the policy says and a run with the same settings resumes from it.
    `style_image` (a path or a PIL image) stands in for `settings.style`; `generator` for the seed's generator.
    """
    settings.validate()
    task = GuidedSampling(pipe, settings, style_image, generator)
    (image, record), _ = runner.run_task(task, device=device, progress=progress, checkpoints=checkpoints)
    return image, record
