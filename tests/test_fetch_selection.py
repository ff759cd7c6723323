"""Which files a fetch takes: exactly what the pipeline loads, from real repositories' file lists."""

import inspect

import pytest

from stylelab.diffusion import fetch
from stylelab.spec.errors import StylelabError

# CompVis/stable-diffusion-v1-4 at 133a221b (main's weights), as its public tree pages list it, with the
# sizes in bytes found there (README, .gitattributes and the picture left out; sizes of files a run never
# loads are those the hub displays).
SD_V1_4 = {
    "model_index.json": 541,
    "feature_extractor/preprocessor_config.json": 342,
    "safety_checker/config.json": 4_560,
    "safety_checker/model.safetensors": 1_215_981_830,
    "safety_checker/pytorch_model.bin": 1_216_061_799,
    "safety_checker/model.fp16.safetensors": 608_018_440,
    "safety_checker/pytorch_model.fp16.bin": 608_103_564,
    "scheduler/scheduler_config.json": 313,
    "text_encoder/config.json": 592,
    "text_encoder/model.safetensors": 492_265_879,
    "text_encoder/model.fp16.safetensors": 246_144_864,
    "text_encoder/pytorch_model.bin": 492_305_335,
    "text_encoder/pytorch_model.fp16.bin": 246_187_076,
    "tokenizer/merges.txt": 524_619,
    "tokenizer/vocab.json": 1_059_962,
    "tokenizer/special_tokens_map.json": 472,
    "tokenizer/tokenizer_config.json": 806,
    "unet/config.json": 743,
    "unet/diffusion_pytorch_model.bin": 3_438_354_725,
    "unet/diffusion_pytorch_model.safetensors": 3_438_167_534,
    "unet/diffusion_pytorch_model.fp16.safetensors": 1_719_125_304,
    "unet/diffusion_pytorch_model.fp16.bin": 1_719_327_893,
    "unet/diffusion_pytorch_model.non_ema.bin": 3_438_366_373,
    "unet/diffusion_pytorch_model.non_ema.safetensors": 3_438_167_536,
    "vae/config.json": 551,
    "vae/diffusion_pytorch_model.safetensors": 334_643_276,
    "vae/diffusion_pytorch_model.fp16.safetensors": 167_335_342,
    "vae/diffusion_pytorch_model.bin": 334_707_217,
    "vae/diffusion_pytorch_model.fp16.bin": 167_405_651,
}
SD_INDEX = {"_class_name": "StableDiffusionPipeline", "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
            "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]}
CONFIGS = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
           "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
           "tokenizer/vocab.json", "unet/config.json", "vae/config.json"]


def test_stable_diffusion_fp16_takes_the_fp16_safetensors_and_nothing_else():
    chosen, notes = fetch.select_files(SD_V1_4, SD_INDEX, "fp16")
    assert chosen == sorted(CONFIGS + ["text_encoder/model.fp16.safetensors",
                                       "unet/diffusion_pytorch_model.fp16.safetensors",
                                       "vae/diffusion_pytorch_model.fp16.safetensors"])
    assert notes == []
    total = sum(SD_V1_4[p] for p in chosen)
    assert 2.13e9 < total < 2.14e9 and total < sum(SD_V1_4.values()) / 10


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stable_diffusion_fp32_and_bf16_take_the_full_precision_safetensors(precision):
    chosen, _ = fetch.select_files(SD_V1_4, SD_INDEX, precision)
    assert chosen == sorted(CONFIGS + ["text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                                       "vae/diffusion_pytorch_model.safetensors"])
    assert not any("non_ema" in p or p.endswith(".bin") or "safety_checker" in p for p in chosen)


def test_decoys_are_never_chosen():
    decoys = {"v1-4.ckpt": 1, "unet/diffusion_flax_model.msgpack": 1, "unet/model.onnx": 1,
              "vae_decoder/model.onnx": 1, "unet/.ipynb_checkpoints/config-checkpoint.json": 1, "README.md": 1}
    chosen, _ = fetch.select_files({**SD_V1_4, **decoys}, SD_INDEX, "fp16")
    assert not set(chosen) & set(decoys)


def test_a_model_without_fp16_weights_takes_its_full_precision_ones_and_says_so():
    listing = {p: s for p, s in SD_V1_4.items() if not p.startswith("vae/diffusion_pytorch_model.fp16")}
    chosen, notes = fetch.select_files(listing, SD_INDEX, "fp16")
    assert "vae/diffusion_pytorch_model.safetensors" in chosen
    assert notes == ["vae has no fp16 weights: its full-precision ones are used"]


def test_sharded_weights_are_taken_whole_with_their_index():
    listing = {p: 1 for p in SD_V1_4 if not p.startswith("unet/diffusion")}
    shards = ["unet/diffusion_pytorch_model-00001-of-00002.safetensors",
              "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
              "unet/diffusion_pytorch_model.safetensors.index.json"]
    listing.update({p: 1 for p in shards + ["unet/diffusion_pytorch_model.fp16.safetensors.index.json"]})
    chosen, _ = fetch.select_files(listing, SD_INDEX, "fp32")
    assert [p for p in chosen if p.startswith("unet/")] == sorted(["unet/config.json", *shards])


def test_only_bin_weights_are_taken_with_a_note_and_no_weights_is_an_error():
    listing = {p: 1 for p in SD_V1_4 if not (p.startswith("vae/") and p.endswith(".safetensors"))}
    chosen, notes = fetch.select_files(listing, SD_INDEX, "fp32")
    assert "vae/diffusion_pytorch_model.bin" in chosen and any("vae has no safetensors" in n for n in notes)
    listing = {p: 1 for p in SD_V1_4 if not (p.startswith("vae/") and p != "vae/config.json")}
    with pytest.raises(StylelabError, match="vae has no weights"):
        fetch.select_files(listing, SD_INDEX, "fp32")


# google/ddpm-celebahq-256: the UNet at the top, beside model_index.json and scheduler_config.json, in .bin.
DDPM_CELEBAHQ = ["model_index.json", "config.json", "scheduler_config.json", "diffusion_pytorch_model.bin",
                 "README.md", ".gitattributes"]
DDPM_INDEX = {"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDPMScheduler"],
              "unet": ["diffusers", "UNet2DModel"]}


def test_the_pixel_ddpm_in_its_single_model_layout():
    chosen, notes = fetch.select_files(DDPM_CELEBAHQ, DDPM_INDEX, "fp32")
    assert chosen == ["config.json", "diffusion_pytorch_model.bin", "model_index.json", "scheduler_config.json"]
    assert any("no safetensors" in n for n in notes)
    folders = ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
               "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors"]
    assert fetch.select_files(folders, DDPM_INDEX, "fp16")[0] == sorted(
        ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
         "unet/diffusion_pytorch_model.fp16.safetensors"])


def test_each_kind_fetches_the_components_its_pipeline_takes():
    from stylelab.diffusion.pipelines import PIPELINES

    for kind, pipeline in PIPELINES.items():
        taken = [name for name in inspect.signature(pipeline.__init__).parameters if name != "self"]
        assert sorted(taken) == sorted(fetch.COMPONENTS[kind])


def test_a_model_index_of_another_pipeline_is_an_error():
    with pytest.raises(StylelabError, match="neither a Stable Diffusion nor a DDPM"):
        fetch.select_files(["model_index.json"], {"_class_name": "FluxPipeline", "transformer": ["x", "y"]}, "fp32")


def test_a_manifest_that_cannot_be_read_names_the_fix(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    with pytest.raises(StylelabError, match="make models"):
        fetch.read_manifest(bad)
    with pytest.raises(StylelabError, match="cannot read the model manifest"):
        fetch.read_manifest(tmp_path / "missing.json")
