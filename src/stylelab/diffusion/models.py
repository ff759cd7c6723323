"""Diffusion models for Part 2: Stable Diffusion (latent, text-to-image) and a pixel-space DDPM.

`load_model(name)` takes a hub id (CompVis/stable-diffusion-v1-4, google/ddpm-celebahq-256), a local folder
in diffusers' layout, or one of the embedded stand-ins `embedded-sd` and `embedded-ddpm`: small models with
random weights that are built here from a seed, with no download, so that the whole of Part 2 runs (and is
tested) on a machine without the real weights. When a real model cannot be loaded, `fallback="embedded"`
uses the stand-in of the same kind and says so (log, and `DiffusionModel.fallback_reason` for the record);
`fallback="error"` stops with a message naming the model, the cache folder and how to get the model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import StylelabError

log = logging.getLogger("stylelab.diffusion")

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
DEFAULT_DDPM = "google/ddpm-celebahq-256"
EMBEDDED = {"embedded-sd": "sd", "embedded-ddpm": "ddpm"}
FALLBACKS = ("embedded", "error")
KINDS = ("sd", "ddpm")

# Stable Diffusion v1's noise schedule (its scheduler_config.json), used by the embedded stand-in too.
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   prediction_type="epsilon")


@dataclass
class DiffusionModel:
    """The pieces a sampling loop needs, as diffusers' pipelines hold them."""

    kind: str  # "sd" (latent, text-conditioned) or "ddpm" (pixel space, unconditional)
    name: str  # what was asked for
    source: str  # what was loaded: a hub id, a folder, or "embedded-sd"/"embedded-ddpm"
    unet: torch.nn.Module
    scheduler: object
    vae: torch.nn.Module | None = None
    text_encoder: torch.nn.Module | None = None
    tokenizer: object | None = None
    image_size: int = 512  # default output size in pixels
    embedded: bool = False
    fallback_reason: str | None = None
    config: dict = field(default_factory=dict)

    @property
    def latent_factor(self) -> int:
        """Pixels per latent cell: 8 for Stable Diffusion, 1 in pixel space."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def to(self, device, dtype=None) -> "DiffusionModel":
        for module in (self.unet, self.vae, self.text_encoder):
            if module is not None:
                module.to(device=device)
                if dtype is not None and module.dtype != dtype:
                    module.to(dtype=dtype)
        return self


def kind_of(name: str) -> str:
    """The kind a model name stands for: embedded names say it; a DDPM id or folder says 'ddpm'."""
    if name in EMBEDDED:
        return EMBEDDED[name]
    return "ddpm" if "ddpm" in Path(name).name.lower() else "sd"


# ----------------------------------------------------------------------------------------------- embedded


def byte_level_vocabulary() -> tuple[dict[str, int], list[str]]:
    """A CLIP-style byte-level BPE vocabulary with no merges: every byte, alone or word-final, + specials.

    It tokenises any text (one token per byte) without any download, which is all a random text
    encoder needs.
    """
    # GPT-2's byte-to-character table, which byte-level BPE (CLIP's tokenizer) works in: printable bytes
    # stand for themselves, the others are moved to characters from 256 upward.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    chars = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, []


def build_embedded_sd(seed: int = 0, image_size: int = 64) -> DiffusionModel:
    """A small Stable Diffusion: UNet2DConditionModel, AutoencoderKL (factor 4) and CLIP text encoder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8, sample_size=image_size)
    vocab, merges = byte_level_vocabulary()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    scheduler = UniPCMultistepScheduler(**SD_SCHEDULE)
    model = DiffusionModel("sd", "embedded-sd", "embedded-sd", unet, scheduler, vae, text_encoder, tokenizer,
                           image_size=image_size, embedded=True)
    return _eval(model)


def build_embedded_ddpm(seed: int = 0, image_size: int = 32) -> DiffusionModel:
    """A small pixel-space DDPM: UNet2DModel with the DDPM linear schedule."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    model = DiffusionModel("ddpm", "embedded-ddpm", "embedded-ddpm", unet, scheduler, image_size=image_size,
                           embedded=True)
    return _eval(model)


def build_sd_v1_architecture(seed: int = 0) -> DiffusionModel:
    """Stable Diffusion v1's UNet, VAE and text encoder as published (860 M + 84 M + 123 M parameters), with
    random weights: for tests and benchmarks of the full-size code path on machines without the checkpoint."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
        norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
        sample_size=512)
    vocab, merges = byte_level_vocabulary()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    model = DiffusionModel("sd", "sd-v1-architecture", "sd-v1-architecture (random weights)", unet,
                           UniPCMultistepScheduler(**SD_SCHEDULE), vae, text_encoder, tokenizer, image_size=512,
                           embedded=True)
    return _eval(model)


def save_model(model: DiffusionModel, folder: str | os.PathLike) -> Path:
    """Write a Stable Diffusion model in diffusers' folder layout (what `load_model(folder)` reads)."""
    folder = Path(folder)
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        getattr(model, name).save_pretrained(folder / name)
    return folder


def _eval(model: DiffusionModel) -> DiffusionModel:
    for module in (model.unet, model.vae, model.text_encoder):
        if module is not None:
            module.eval().requires_grad_(False)
    return model


# ------------------------------------------------------------------------------------------------ real


def hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _load_real(name: str, kind: str) -> DiffusionModel:
    local = Path(name).expanduser()
    # Never a download at run time: a hub id is read from the local Hugging Face cache only.
    options = {"local_files_only": True}
    if kind == "sd":
        from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
        from transformers import CLIPTextModel, CLIPTokenizer

        where = str(local) if local.is_dir() else name
        unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet", **options)
        vae = AutoencoderKL.from_pretrained(where, subfolder="vae", **options)
        text_encoder = CLIPTextModel.from_pretrained(where, subfolder="text_encoder", **options)
        tokenizer = CLIPTokenizer.from_pretrained(where, subfolder="tokenizer", **options)
        scheduler = UniPCMultistepScheduler.from_pretrained(where, subfolder="scheduler", **options)
        size = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
        return _eval(DiffusionModel("sd", name, where, unet, scheduler, vae, text_encoder, tokenizer, image_size=size))
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(str(local) if local.is_dir() else name, **options)
    return _eval(DiffusionModel("ddpm", name, name, pipe.unet, pipe.scheduler, image_size=pipe.unet.config.sample_size))


def load_model(name: str = DEFAULT_SD, fallback: str = "embedded", seed: int = 0,
               embedded_size: int | None = None) -> DiffusionModel:
    """Load `name` (hub id, folder, or embedded-sd/embedded-ddpm), falling back as `fallback` says."""
    if fallback not in FALLBACKS:
        raise StylelabError(f"unknown fallback '{fallback}'; choose one of {', '.join(FALLBACKS)}.")
    kind = kind_of(name)
    builders = {"sd": build_embedded_sd, "ddpm": build_embedded_ddpm}
    sizes = {} if embedded_size is None else {"image_size": embedded_size}
    if name in EMBEDDED:
        return builders[kind](seed=seed, **sizes)
    try:
        return _load_real(name, kind)
    except Exception as exc:  # noqa: BLE001 - offline, missing files, wrong layout: all mean "not loadable"
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    if fallback == "error":
        raise StylelabError(
            f"cannot load diffusion model '{name}' ({reason}). It is looked for as a local folder and in the "
            f"Hugging Face cache {hub_cache()}. Download it where there is network (`huggingface-cli download "
            f"{name}`) and copy the cache folder here (or set HF_HOME), pass a local folder in diffusers' "
            f"layout, or set `fallback: embedded` to use the small stand-in model.")
    log.warning("cannot load diffusion model '%s' (%s); using the embedded stand-in embedded-%s (random weights)",
                name, reason, kind)
    model = builders[kind](seed=seed, **sizes)
    model.name = name
    model.fallback_reason = f"'{name}' could not be loaded ({reason}); embedded-{kind} used instead"
    return model
