"""The guided samplers as diffusers pipelines: saved, loaded, called from Python, and the image `stylelab
generate` writes, bit for bit. A model's kind comes from its model_index.json, never from its name."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, PNDMScheduler, StableDiffusionPipeline, UniPCMultistepScheduler
from PIL import Image

from stylelab.run import checkpoint
from stylelab.diffusion import models
from stylelab.diffusion.models import generate
from stylelab.spec.settings import GuidanceSettings, ModelChoice
from stylelab.diffusion.pipelines import StyleGuidedDDPMPipeline, StyleGuidedStableDiffusionPipeline
from stylelab.engine.images import tensor_to_pil


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """The commands' checkpoints go to a temporary cache, never the project's."""
    monkeypatch.setenv(checkpoint.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory, stand_in):
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    stand_in("embedded-sd", image_size=32).save_pretrained(folder)
    return folder


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_pipeline_call_gives_the_image_of_the_generate_command(sd_folder, picasso, run_cli, tmp_path):
    pipe = StyleGuidedStableDiffusionPipeline.from_pretrained(sd_folder)
    image = pipe("a cat", style_image=picasso, guidance_factor=0.6, num_inference_steps=4).images[0]
    code, _, err = run_cli("generate", "--model", sd_folder, "--prompt", "a cat", "--style", picasso,
                           "--guidance-factor", "0.6", "--steps", "4", "--device", "cpu", "--quiet",
                           "--precision", "fp32",  # the pipeline computes in its own dtype, fp32 as loaded
                           "--out", tmp_path / "g")
    assert code == 0, err
    written = Image.open(tmp_path / "g" / "image.png")
    assert image.size == written.size == (32, 32)  # the model's own size
    assert np.array_equal(_pixels(image), _pixels(written))
    record = json.loads((tmp_path / "g" / "record.json").read_text())
    assert record["model"]["kind"] == "sd" and not record["model"]["embedded"]
    assert record["model"]["scheduler"] == "UniPCMultistepScheduler"
    # A style image given as a PIL image, and the tensor output, are the same sample.
    tensor = pipe("a cat", style_image=Image.open(picasso), guidance_factor=0.6, num_inference_steps=4,
                  output_type="pt").images
    assert tensor.shape == (1, 3, 32, 32) and np.array_equal(_pixels(tensor_to_pil(tensor)), _pixels(written))


def test_a_saved_pipeline_loads_with_its_components_and_schedule(sd_folder, stand_in):
    index = json.loads((sd_folder / "model_index.json").read_text())
    assert index["_class_name"] == "StyleGuidedStableDiffusionPipeline"
    pipe = StyleGuidedStableDiffusionPipeline.from_pretrained(sd_folder)
    built = stand_in("embedded-sd", image_size=32)
    assert set(pipe.components) == {"vae", "text_encoder", "tokenizer", "unet", "scheduler"}
    for name in ("unet", "vae", "text_encoder"):
        saved, fresh = getattr(pipe, name).state_dict(), getattr(built, name).state_dict()
        assert saved.keys() == fresh.keys() and all(torch.equal(saved[k], fresh[k]) for k in saved)
    assert dict(pipe.scheduler.config)["beta_schedule"] == "scaled_linear" and pipe.vae_scale_factor == 4
    assert pipe.image_size == 32 and pipe.encode_prompt("a cat", "cpu").shape == (2, 77, 32)


def test_the_kind_comes_from_model_index_not_the_name(tmp_path, stand_in):
    stand_in("embedded-ddpm", image_size=16).save_pretrained(tmp_path / "stable-diffusion-sd")
    stand_in("embedded-sd", image_size=16).save_pretrained(tmp_path / "my-ddpm-model")
    DDPMPipeline(**stand_in("embedded-ddpm", image_size=16).components).save_pretrained(tmp_path / "sd-v2")
    ddpm = models.load_model(str(tmp_path / "stable-diffusion-sd"), fallback="error")
    sd = models.load_model(str(tmp_path / "my-ddpm-model"), fallback="error")
    standard_ddpm = models.load_model(str(tmp_path / "sd-v2"), fallback="error")
    assert isinstance(ddpm, StyleGuidedDDPMPipeline) and ddpm.kind == "ddpm" and not ddpm.origin.embedded
    assert isinstance(sd, StyleGuidedStableDiffusionPipeline) and sd.kind == "sd" and not sd.origin.embedded
    assert isinstance(standard_ddpm, StyleGuidedDDPMPipeline)
    # The stand-ins are pipelines of the same classes, built in memory.
    assert isinstance(models.load_model("embedded-ddpm"), StyleGuidedDDPMPipeline)
    assert isinstance(models.load_model("embedded-sd"), StyleGuidedStableDiffusionPipeline)


def test_the_ddpm_pipeline_round_trips_and_matches_generate(tmp_path, picasso, stand_in):
    folder = tmp_path / "tiny-ddpm"
    stand_in("embedded-ddpm", image_size=16).save_pretrained(folder)
    pipe = StyleGuidedDDPMPipeline.from_pretrained(folder)
    assert pipe.image_size == 16 and isinstance(pipe.scheduler, type(stand_in("embedded-ddpm").scheduler))
    out = pipe(style_image=str(picasso), guidance_factor=0.6, num_inference_steps=3, seed=5, output_type="pt")
    image, record = generate(ModelChoice(model=str(folder), device="cpu"),
                             GuidanceSettings(style=str(picasso), guidance_factor=0.6, steps=3, seed=5,
                                              precision="fp32"),
                             progress=False)
    assert torch.equal(out.images, image) and out.record.history["style/gram"] == record.history["style/gram"]
    # DDPM draws noise at every step: a generator seeded alike gives the same sample.
    seeded = pipe(style_image=str(picasso), guidance_factor=0.6, num_inference_steps=3, output_type="pt",
                  generator=torch.Generator().manual_seed(5))
    assert torch.equal(seeded.images, image) and seeded.record.seed == 5


def test_the_standard_stable_diffusion_layout_loads_into_our_pipeline(tmp_path, picasso, stand_in):
    """The hub's layout: StableDiffusionPipeline in model_index.json, a PNDM scheduler and a safety checker."""
    tiny, folder = stand_in("embedded-sd", image_size=16), tmp_path / "hub-layout"
    StableDiffusionPipeline(vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer, unet=tiny.unet,
                            scheduler=PNDMScheduler(steps_offset=1), safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    # CompVis/stable-diffusion-v1-4's scheduler_config.json, as published.
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.7.0.dev0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
        "clip_sample": False}))
    index = json.loads((folder / "model_index.json").read_text())
    # Named as in the hub snapshot, without their folders: they must not be loaded.
    index.update(safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
                 feature_extractor=["transformers", "CLIPImageProcessor"])
    (folder / "model_index.json").write_text(json.dumps(index))
    pipe = models.load_model(str(folder), fallback="error")
    assert isinstance(pipe, StyleGuidedStableDiffusionPipeline) and not pipe.origin.embedded
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler) and pipe.scheduler.config.steps_offset == 1
    assert not hasattr(pipe, "safety_checker") and set(pipe.components) == {"vae", "text_encoder", "tokenizer",
                                                                              "unet", "scheduler"}
    out = pipe("a cat", style_image=picasso, guidance_factor=0.6, num_inference_steps=2, output_type="pt")
    assert out.images.shape == (1, 3, 16, 16) and out.record.timing.guided_steps == 2
