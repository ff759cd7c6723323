"""Style-guided diffusion pipelines: Stable Diffusion (latent, text-to-image) and a pixel-space DDPM.

Both are diffusers `DiffusionPipeline`s whose components are registered with `register_modules`, so
`from_pretrained`, `save_pretrained`, `components` and `to()` come from diffusers. They add what the guided
sampler needs of a model (`encode_prompt`, `predict_noise`, `decode`) and a `__call__` that runs the very loop
`stylelab generate` runs (stylelab.diffusion.guidance), so both give the same image, bit for bit:

    pipe = StyleGuidedStableDiffusionPipeline.from_pretrained(folder)
    image = pipe("a cat", style_image="picasso.jpg", guidance_factor=0.6, num_inference_steps=50).images[0]
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import (AutoencoderKL, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel, UNet2DModel,
                       UniPCMultistepScheduler)
from diffusers.utils import BaseOutput
from transformers import CLIPTextModel, CLIPTokenizer

from stylelab.engine.images import tensor_to_pil
from stylelab.spec.records import GenerationRecord, ModelInfo
from stylelab.spec.settings import SEED_LIMIT, GuidanceSettings
from . import guidance

PRECISION_OF = {dtype: name for name, dtype in guidance.DTYPES.items()}
OUTPUT_TYPES = ("pil", "np", "pt")
# Settings that `__call__` takes by diffusers' names for them.
_DIFFUSERS_NAMES = {"steps": "num_inference_steps", "cfg_scale": "guidance_scale", "size": "height and width"}


@dataclass
class StyleGuidedPipelineOutput(BaseOutput):
    """`images`: PIL images, a (B, H, W, 3) array or a (B, 3, H, W) tensor in [0, 1]; `record`: how it was made."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    record: GenerationRecord | None = None


def _freeze(*modules: torch.nn.Module) -> None:
    """Sampling only: no dropout, and no gradient kept for any weight (the guidance differentiates eps only)."""
    for module in modules:
        module.eval().requires_grad_(False)


class _StyleGuided:
    """What both pipelines share: the scheduler they load, where they came from, and `__call__`."""

    kind: str  # "sd" or "ddpm", as the record names it
    scheduler_class: type
    vae_scale_factor: int

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """DiffusionPipeline.from_pretrained, with this sampler's scheduler built from the model's schedule (the
        hub's layout names a PNDM scheduler); the components this pipeline has no place for are left unloaded."""
        if "scheduler" not in kwargs:
            hub = {k: kwargs[k] for k in ("local_files_only", "cache_dir", "revision", "token") if k in kwargs}
            kwargs["scheduler"] = cls.scheduler_class.from_pretrained(pretrained_model_name_or_path,
                                                                      subfolder="scheduler", **hub)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def origin(self) -> ModelInfo:
        """Where the weights came from (stylelab.diffusion.models sets it as it loads them)."""
        saved = self.__dict__.get("_origin")
        if saved is not None:
            return saved
        name = str(self.name_or_path or f"{type(self).__name__} (in memory)")
        return ModelInfo(name=name, kind=self.kind, source=name)

    @origin.setter
    def origin(self, value: ModelInfo) -> None:
        self._origin = value

    @property
    def image_size(self) -> int:
        """The model's own output size in pixels."""
        return self.unet.config.sample_size * self.vae_scale_factor

    def __call__(self, prompt: str | None = None, style_image: str | PIL.Image.Image | None = None, *,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 height: int | None = None, width: int | None = None, generator: torch.Generator | None = None,
                 output_type: str = "pil", return_dict: bool = True, **settings: Any):
        """One style-guided sample; what is not given takes GuidanceSettings' default, as `stylelab generate` does.

        `style_image` (a path or a PIL image) is what the VGG style loss of each step's clean estimate is
        measured against. Every GuidanceSettings field is an option by its own name (`guidance_factor`: 0 is
        unguided, `style_loss`, `seed`, ...) but three, by diffusers' names: `num_inference_steps` (steps),
        `guidance_scale` (cfg_scale) and `height` / `width` (size: the image is square, so they must agree;
        default: the model's own size). The noise comes from `generator` when given (the record's seed is then
        its initial seed), else from a CPU generator seeded with `seed`. The precision is the pipeline's dtype.
        Returns a StyleGuidedPipelineOutput: `.images` and `.record` (or `(images,)` with return_dict=False).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        for name, option in _DIFFUSERS_NAMES.items():
            if name in settings:
                raise TypeError(f"give {option} instead of {name}")
        if height is not None and width is not None and height != width:
            raise ValueError(f"the guided sampler makes square images; got height {height} and width {width}")
        given = {"prompt": prompt, "steps": num_inference_steps, "cfg_scale": guidance_scale,
                 "size": height if height is not None else width}
        settings.update({name: value for name, value in given.items() if value is not None})
        if generator is not None:
            settings["seed"] = generator.initial_seed() % SEED_LIMIT  # exact for a freshly seeded generator
        if self.dtype not in PRECISION_OF:
            raise ValueError(f"the pipeline's dtype {self.dtype} is none of {', '.join(map(str, PRECISION_OF))}")
        if isinstance(style_image, PIL.Image.Image):  # the style as GuidanceSettings records it
            style = f"(PIL image {style_image.width} x {style_image.height})"
        else:  # None, or a path (a path-like as a string)
            style = style_image if style_image is None or isinstance(style_image, str) else str(style_image)
        chosen = GuidanceSettings(style=style, precision=PRECISION_OF[self.dtype], **settings)
        progress = not getattr(self, "_progress_bar_config", {}).get("disable", False)
        images, record = guidance.sample(self, chosen, device=str(self._execution_device), progress=progress,
                                         style_image=style_image, generator=generator)
        if output_type == "np":
            images = images.permute(0, 2, 3, 1).numpy()
        elif output_type == "pil":
            images = [tensor_to_pil(one) for one in images]  # the conversion stylelab's PNGs are written with
        return StyleGuidedPipelineOutput(images=images, record=record) if return_dict else (images,)


class StyleGuidedStableDiffusionPipeline(_StyleGuided, DiffusionPipeline):
    """Stable Diffusion steered by a style loss: UNet2DConditionModel, AutoencoderKL and a CLIP text encoder."""

    kind = "sd"
    scheduler_class = UniPCMultistepScheduler
    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 unet: UNet2DConditionModel, scheduler: UniPCMultistepScheduler):
        super().__init__()
        _freeze(vae, text_encoder, unet)
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)  # pixels per latent cell

    @torch.no_grad()
    def encode_prompt(self, prompt: str, device, do_classifier_free_guidance: bool = True,
                      negative_prompt: str = "") -> torch.Tensor:
        """The text encoder's hidden states: of (negative_prompt, prompt) with classifier-free guidance,
        else of (prompt,). Both are encoded in one batch either way, so the prompt's states do not depend on it."""
        limit = self.tokenizer.model_max_length
        tokens = self.tokenizer([negative_prompt, prompt], padding="max_length", truncation=True,
                                max_length=limit if limit < 10_000 else 77, return_tensors="pt")
        states = self.text_encoder(tokens.input_ids.to(device))[0]
        return states if do_classifier_free_guidance else states[1:]

    def predict_noise(self, latents: torch.Tensor, t, prompt_embeds: torch.Tensor, guidance_scale: float):
        """eps at step t; a pair of prompt states (negative, prompt) means classifier-free guidance."""
        pair = prompt_embeds.shape[0] == 2
        batch = self.scheduler.scale_model_input(torch.cat([latents] * 2) if pair else latents, t)
        eps = self.unet(batch, t, encoder_hidden_states=prompt_embeds).sample
        if pair:
            eps_uncond, eps_text = eps.chunk(2)
            eps = eps_uncond + guidance_scale * (eps_text - eps_uncond)
        return eps

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Latents to an RGB image in [0, 1] (not clamped)."""
        image = self.vae.decode(x0.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return image.float() / 2 + 0.5


class StyleGuidedDDPMPipeline(_StyleGuided, DiffusionPipeline):
    """A pixel-space DDPM (UNet2DModel) steered by a style loss; unconditional, so the prompt is unused."""

    kind = "ddpm"
    scheduler_class = DDPMScheduler
    model_cpu_offload_seq = "unet"
    vae_scale_factor = 1  # the UNet works on the pixels themselves

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler):
        super().__init__()
        _freeze(unet)
        self.register_modules(unet=unet, scheduler=scheduler)

    def encode_prompt(self, prompt: str, device, do_classifier_free_guidance: bool = True,
                      negative_prompt: str = "") -> None:
        return None  # unconditional: there is no text to encode

    def predict_noise(self, latents: torch.Tensor, t, prompt_embeds: None = None, guidance_scale: float = 1.0):
        return self.unet(self.scheduler.scale_model_input(latents, t), t).sample

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] to [0, 1] (not clamped)."""
        return x0.float() / 2 + 0.5


PIPELINES = {pipeline.kind: pipeline for pipeline in (StyleGuidedStableDiffusionPipeline, StyleGuidedDDPMPipeline)}
