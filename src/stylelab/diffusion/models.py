"""The diffusion models of Part 2 as pipelines: Stable Diffusion (latent, text-to-image) and a pixel-space DDPM.

`load_model` loads a hub id from the local Hugging Face cache (never downloading), a local folder in diffusers'
layout, or a stand-in (`embedded-sd`, `embedded-ddpm`: small, random weights from a seed, so that Part 2 runs and
is tested without the real weights); `load_from_manifest` loads exactly the files a fetch listed. A model that
cannot be loaded takes the stand-in of its kind (`fallback="embedded"`) or stops (`fallback="error"`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel, UNet2DModel, UniPCMultistepScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from stylelab.run.checkpoint import CheckpointPolicy
from stylelab.spec.errors import StylelabError
from stylelab.spec.files import read_image
from stylelab.spec.records import GenerationRecord, ModelInfo
from stylelab.spec.settings import FALLBACKS, GuidanceSettings, ModelChoice, fetch_precision
from . import guidance
from .fetch import (FETCH_COMMAND, Manifest, ModelSource, from_cache, hub_cache, model_kind, read_index,
                    read_manifest, single_model_layout)
from .pipelines import PIPELINES, StyleGuidedDDPMPipeline, StyleGuidedStableDiffusionPipeline

log = logging.getLogger("stylelab.diffusion")

# Stable Diffusion v1's noise schedule (its scheduler_config.json), used by the embedded stand-in too.
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   prediction_type="epsilon")


def byte_level_vocabulary() -> dict[str, int]:
    """A CLIP-style byte-level BPE vocabulary that needs no merges, nor a download: every byte, alone or word-final."""
    # GPT-2's byte-to-character table, which byte-level BPE (CLIP's tokenizer) works in: printable bytes
    # stand for themselves, the others are moved to characters from 256 upward.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    chars = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def _build_sd(seed: int, image_size: int, unet_channels: tuple, vae_channels: tuple, layers: int, groups: int,
              **text) -> StyleGuidedStableDiffusionPipeline:
    """A Stable Diffusion with random weights: the UNet and VAE with `layers` per block and `groups` norm groups
    (cross-attention in all but the UNet's deepest block), the CLIP text encoder configured by `text`."""
    # The weights are the global generator's draws in this order: changing the order changes the model.
    torch.manual_seed(seed)
    cross = len(unet_channels) - 1
    unet = UNet2DConditionModel(
        sample_size=image_size // 2 ** (len(vae_channels) - 1), in_channels=4, out_channels=4, layers_per_block=layers,
        block_out_channels=unet_channels, down_block_types=("CrossAttnDownBlock2D",) * cross + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * cross, cross_attention_dim=text["hidden_size"],
        attention_head_dim=8, norm_num_groups=groups)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=layers, block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels), norm_num_groups=groups, sample_size=image_size)
    vocab = byte_level_vocabulary()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    text_encoder = CLIPTextModel(CLIPTextConfig(
        **{"vocab_size": len(vocab), **text}, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]))
    return StyleGuidedStableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                              scheduler=UniPCMultistepScheduler(**SD_SCHEDULE))


def build_embedded_sd(seed: int = 0, image_size: int = 64) -> StyleGuidedStableDiffusionPipeline:
    """A small Stable Diffusion: UNet2DConditionModel, AutoencoderKL (factor 4) and CLIP text encoder."""
    pipe = _build_sd(seed, image_size, (32, 64), (16, 32, 32), layers=1, groups=8, hidden_size=32,
                     intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    pipe.origin = ModelInfo("embedded-sd", "sd", "embedded-sd", embedded=True)
    return pipe


def build_embedded_ddpm(seed: int = 0, image_size: int = 32) -> StyleGuidedDDPMPipeline:
    """A small pixel-space DDPM: UNet2DModel with the DDPM linear schedule."""
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8)
    pipe = StyleGuidedDDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))
    pipe.origin = ModelInfo("embedded-ddpm", "ddpm", "embedded-ddpm", embedded=True)
    return pipe


def build_sd_v1_architecture(seed: int = 0) -> StyleGuidedStableDiffusionPipeline:
    """Stable Diffusion v1's UNet, VAE and text encoder as published (860 M + 84 M + 123 M parameters), with
    random weights: for tests and benchmarks of the full-size code path on machines without the checkpoint."""
    pipe = _build_sd(seed, 512, (320, 640, 1280, 1280), (128, 256, 512, 512), layers=2, groups=32, vocab_size=49408,
                     hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
    pipe.origin = ModelInfo("sd-v1-architecture", "sd", "sd-v1-architecture (random weights)", embedded=True)
    return pipe


STAND_INS = {"embedded-sd": build_embedded_sd, "embedded-ddpm": build_embedded_ddpm}


def _embedded(name: str, seed: int, embedded_size: int | None):
    return STAND_INS[name](seed=seed, **({} if embedded_size is None else {"image_size": embedded_size}))


def _load_pipeline(folder: Path, variant: str | None = None):
    """A model folder (a cache snapshot or a local one) as the pipeline its model_index.json says it is."""
    single = single_model_layout([p.name for p in folder.iterdir()])
    kind = model_kind(read_index(folder))
    if not single:
        return PIPELINES[kind].from_pretrained(folder, local_files_only=True, variant=variant)
    if kind != "ddpm":
        raise StylelabError(f"{folder}: a model at the top of its folder is supported for a DDPM only.")
    # The single-model layout (google/ddpm-celebahq-256): the UNet and scheduler_config.json at the top.
    unet = UNet2DModel.from_pretrained(folder)
    return StyleGuidedDDPMPipeline(unet=unet, scheduler=StyleGuidedDDPMPipeline.scheduler_class.from_pretrained(folder))


def load_from_manifest(manifest: Manifest, fallback: str = "embedded", seed: int = 0,
                       embedded_size: int | None = None):
    """The model `stylelab models fetch` wrote `manifest` for: exactly its files, from its folder (no network);
    the stand-in (or, with `fallback: error`, a stop) for a model the manifest calls not available."""
    if manifest.source == "embedded":
        return load_model(manifest.model, seed=seed, embedded_size=embedded_size)
    if not manifest.available:
        return _stand_in(manifest.model, manifest.reason, fallback, seed, embedded_size, manifest.kind)
    folder = Path(manifest.folder)
    for entry in manifest.files:
        path = folder / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            what = "missing" if not path.is_file() else "of another size"
            raise StylelabError(f"{path}, which the model manifest lists, is {what} since the fetch: fetch the "
                                f"model again (`{FETCH_COMMAND}`).")
    variant = manifest.variant
    if not any(f".{variant}." in entry["path"] for entry in manifest.files):
        variant = None  # no files of the variant: the full-precision ones
    pipe = _load_pipeline(folder, variant)
    pipe.origin = ModelInfo(manifest.model, pipe.kind, str(folder), commit=manifest.commit, revision=manifest.revision,
                            pinned=manifest.pinned, files=manifest.files)
    return pipe


def load_model(name: str = "CompVis/stable-diffusion-v1-4", fallback: str = "embedded", seed: int = 0,
               embedded_size: int | None = None, revision: str | None = None,
               precision: str = "fp32") -> StyleGuidedStableDiffusionPipeline | StyleGuidedDDPMPipeline:
    """Load `name`, falling back as `fallback` says: a stand-in (embedded-sd, embedded-ddpm), a local folder,
    or a hub id at `revision`, whose files `stylelab models fetch` selects for `precision` are loaded from the
    local Hugging Face cache, never downloaded (`load_from_manifest` loads a fetch's manifest)."""
    if fallback not in FALLBACKS:
        raise StylelabError(f"unknown fallback '{fallback}'; choose one of {', '.join(FALLBACKS)}.")
    if name in STAND_INS:
        return _embedded(name, seed, embedded_size)
    local = Path(name).expanduser()
    if not local.is_dir():
        manifest = from_cache(ModelSource(name, revision or "main", precision, fallback),
                              "generate reads the local cache only")
        if not manifest.available:
            reason = f"it could not be loaded: {manifest.reason}"
            return _stand_in(name, reason, fallback, seed, embedded_size, manifest.kind)
        return load_from_manifest(manifest, fallback, seed, embedded_size)
    try:
        pipe = _load_pipeline(local)
    except Exception as exc:  # noqa: BLE001 - missing files, wrong layout: all mean "not loadable"
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        return _stand_in(name, f"it could not be loaded: {reason}", fallback, seed, embedded_size)
    pipe.origin = ModelInfo(name, pipe.kind, str(local))
    return pipe


def _stand_in(name: str, reason: str, fallback: str, seed: int, embedded_size: int | None, kind: str | None = None):
    """The stand-in of `name`'s kind, saying why; or, with fallback error, the one line that stops the run."""
    if fallback == "error":
        raise StylelabError(f"diffusion model '{name}' cannot be used ({reason}). It is looked for as a local folder "
                            f"and in the Hugging Face cache {hub_cache()}. Fetch it where there is network "
                            f"(`{FETCH_COMMAND}`, or `stylelab models fetch --model {name}`) and copy the cache "
                            "folder here (or set HF_HOME), pass a local folder in diffusers' layout, or set "
                            "`fallback: embedded` to use the small stand-in model.")
    if not kind:  # what its folder's model_index.json says, else a guess from the name
        try:
            kind = model_kind(read_index(Path(name).expanduser()))
        except Exception:  # noqa: BLE001 - no index, or one naming neither kind
            kind = "ddpm" if "ddpm" in Path(name).name.lower() else "sd"
    log.warning("diffusion model '%s' not used (%s); using the embedded stand-in embedded-%s (random weights)",
                name, reason, kind)
    pipe = _embedded(f"embedded-{kind}", seed, embedded_size)
    pipe.origin = ModelInfo(name, kind, f"embedded-{kind}", embedded=True,
                            fallback_reason=f"'{name}' is not available ({reason}); embedded-{kind} used instead")
    return pipe


def generate(choice: ModelChoice, settings: GuidanceSettings, progress: bool = True,
             checkpoints: CheckpointPolicy | None = None,
             manifest: str | None = None) -> tuple[torch.Tensor, GenerationRecord]:
    """What `stylelab generate` computes: load the model (with its fallback, from `manifest` where given, what
    `stylelab models fetch` wrote), then one guided sample."""
    settings.validate()  # before loading any model, so a mistake costs nothing
    if settings.style:
        read_image(settings.style, settings.max_pixels)  # the same, for a missing or oversized style
    if manifest is not None:
        fetched = read_manifest(manifest)
        if fetched.model != choice.model:
            raise StylelabError(f"the model manifest {manifest} is of '{fetched.model}', not of '{choice.model}': "
                                "fetch the model again (`make models`).")
        pipe = load_from_manifest(fetched, fallback=choice.fallback, seed=settings.seed)
    else:
        pipe = load_model(choice.model, fallback=choice.fallback, seed=settings.seed, revision=choice.revision,
                          precision=fetch_precision(settings.precision, choice.device))
    return guidance.sample(pipe, settings, device=choice.device, progress=progress, checkpoints=checkpoints)
