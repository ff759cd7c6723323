"""The diffusion models of Part 2: Stable Diffusion (latent, text-to-image) and a pixel-space DDPM, as pipelines.

`load_model(name)` takes a hub id (CompVis/stable-diffusion-v1-4, google/ddpm-celebahq-256), whose files the
fetch selects are loaded from the local Hugging Face cache (never downloaded: `stylelab models fetch` is the
one step that downloads), a local folder in diffusers' layout, or one of the embedded stand-ins `embedded-sd`
and `embedded-ddpm`: small models with random weights, built here from a seed, so that the whole of Part 2
runs (and is tested) without the real weights. `load_from_manifest` loads exactly the files a fetch listed.
Every one is a StyleGuidedStableDiffusionPipeline or a StyleGuidedDDPMPipeline (stylelab.diffusion.pipelines)
whose `origin` (a ModelInfo) says where its weights came from, for the record.

A model that cannot be loaded takes, with `fallback="embedded"`, the stand-in of its kind (its
model_index.json's where that can be read, else "ddpm" in its name) and says why; `fallback="error"` stops
with a message naming the model, the cache folder and how to get the model. `generate` is what
`stylelab generate` computes: the model, then one guided sample.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import FALLBACKS
from .fetch import FETCH_COMMAND, Manifest, hub_cache, model_kind, single_model_layout
from stylelab.run.checkpoint import CheckpointPolicy
from stylelab.spec.files import read_image
from stylelab.spec.records import GenerationRecord, ModelInfo
from stylelab.spec.settings import GuidanceSettings, ModelChoice, fetch_precision
from .fetch import ModelSource, from_cache, read_index, read_manifest
from . import guidance
from .pipelines import PIPELINES, StyleGuidedDDPMPipeline, StyleGuidedStableDiffusionPipeline

log = logging.getLogger("stylelab.diffusion")

DEFAULT_SD = "CompVis/stable-diffusion-v1-4"
DEFAULT_DDPM = "google/ddpm-celebahq-256"

# Stable Diffusion v1's noise schedule (its scheduler_config.json), used by the embedded stand-in too.
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   prediction_type="epsilon")



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


def build_embedded_sd(seed: int = 0, image_size: int = 64) -> StyleGuidedStableDiffusionPipeline:
    """A small Stable Diffusion: UNet2DConditionModel, AutoencoderKL (factor 4) and CLIP text encoder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # The weights are the global generator's draws in this order: changing the order changes the model.
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
    pipe = StyleGuidedStableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                              scheduler=UniPCMultistepScheduler(**SD_SCHEDULE))
    pipe.origin = ModelInfo("embedded-sd", "sd", "embedded-sd", embedded=True)
    return pipe


def build_embedded_ddpm(seed: int = 0, image_size: int = 32) -> StyleGuidedDDPMPipeline:
    """A small pixel-space DDPM: UNet2DModel with the DDPM linear schedule."""
    from diffusers import DDPMScheduler, UNet2DModel

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
    pipe = StyleGuidedStableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                              scheduler=UniPCMultistepScheduler(**SD_SCHEDULE))
    pipe.origin = ModelInfo("sd-v1-architecture", "sd", "sd-v1-architecture (random weights)", embedded=True)
    return pipe


STAND_INS = {"embedded-sd": build_embedded_sd, "embedded-ddpm": build_embedded_ddpm}


# ------------------------------------------------------------------------------------------------ real


def _load_pipeline(folder: Path, variant: str | None = None):
    """A model folder (a cache snapshot or a local one) as the pipeline its model_index.json says it is."""
    if single_model_layout([p.name for p in folder.iterdir()]):
        pipe = _load_single_model(folder)
    else:
        pipe = PIPELINES[model_kind(read_index(folder))].from_pretrained(folder, local_files_only=True,
                                                                         variant=variant)
    pipe.origin = ModelInfo(str(folder), pipe.kind, str(folder))
    return pipe


def _load_single_model(folder: Path) -> StyleGuidedDDPMPipeline:
    """A DDPM in the single-model layout (google/ddpm-celebahq-256): the UNet and scheduler_config.json on top."""
    from diffusers import UNet2DModel

    if model_kind(read_index(folder)) != "ddpm":
        raise StylelabError(f"{folder}: a model at the top of its folder is supported for a DDPM only.")
    unet = UNet2DModel.from_pretrained(folder)
    scheduler = StyleGuidedDDPMPipeline.scheduler_class.from_pretrained(folder)
    return StyleGuidedDDPMPipeline(unet=unet, scheduler=scheduler)


def load_from_manifest(manifest: Manifest, fallback: str = "embedded", seed: int = 0,
                       embedded_size: int | None = None):
    """The model `stylelab models fetch` wrote `manifest` for: exactly its files, from its folder (no network).

    A model the manifest calls not available takes the stand-in, or stops with `fallback: error`; a file that
    is gone or has another size since the fetch is an error naming the fix.
    """
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
    pipe = _load_pipeline(folder, variant=manifest.variant if _has_variant(manifest) else None)
    pipe.origin = ModelInfo(manifest.model, pipe.kind, str(folder), commit=manifest.commit, revision=manifest.revision,
                            pinned=manifest.pinned, files=manifest.files)
    return pipe


def _has_variant(manifest: Manifest) -> bool:
    return manifest.variant is not None and any(f".{manifest.variant}." in f["path"] for f in manifest.files)


def _stand_in_kind(name: str) -> str:
    """The kind of stand-in for a model that could not be loaded: what its folder's model_index.json says if
    it can be read; for a model with nothing to read, only a guess from the name is left ("ddpm" in it)."""
    try:
        return model_kind(read_index(Path(name).expanduser()))
    except Exception:  # noqa: BLE001 - no index, or one naming neither kind
        return "ddpm" if "ddpm" in Path(name).name.lower() else "sd"


def load_model(name: str = DEFAULT_SD, fallback: str = "embedded", seed: int = 0,
               embedded_size: int | None = None, revision: str | None = None,
               precision: str = "fp32") -> StyleGuidedStableDiffusionPipeline | StyleGuidedDDPMPipeline:
    """Load `name`, falling back as `fallback` says: a stand-in (embedded-sd, embedded-ddpm), a local folder,
    or a hub id at `revision`, whose files `stylelab models fetch` selects for `precision` are loaded from the
    local Hugging Face cache, never downloaded (`load_from_manifest` loads a fetch's manifest)."""
    if fallback not in FALLBACKS:
        raise StylelabError(f"unknown fallback '{fallback}'; choose one of {', '.join(FALLBACKS)}.")
    sizes = {} if embedded_size is None else {"image_size": embedded_size}
    if name in STAND_INS:
        return STAND_INS[name](seed=seed, **sizes)
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
    kind = kind or _stand_in_kind(name)
    log.warning("diffusion model '%s' not used (%s); using the embedded stand-in embedded-%s (random weights)",
                name, reason, kind)
    sizes = {} if embedded_size is None else {"image_size": embedded_size}
    pipe = STAND_INS[f"embedded-{kind}"](seed=seed, **sizes)
    pipe.origin = ModelInfo(name, kind, f"embedded-{kind}", embedded=True,
                            fallback_reason=f"'{name}' is not available ({reason}); embedded-{kind} used instead")
    return pipe


def generate(choice: ModelChoice, settings: GuidanceSettings, progress: bool = True,
             checkpoints: CheckpointPolicy | None = None,
             manifest: str | None = None) -> tuple[torch.Tensor, GenerationRecord]:
    """What `stylelab generate` computes: load the model (with its fallback), then one guided sample.

    With `manifest` (what `stylelab models fetch` wrote), exactly the files it lists are loaded; a hub id
    without one loads the files the fetch selects for the run's precision, from the cache.
    """
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
