"""Part 2 on the embedded stand-in models (CPU, offline): loading, fallback, and the guided sampler."""

import json

import pytest
import torch

from stylelab.diffusion import guidance, models
from stylelab.diffusion.guidance import sample
from stylelab.spec.settings import GuidanceSettings
from stylelab.diffusion.pipelines import StyleGuidedDDPMPipeline, StyleGuidedStableDiffusionPipeline
from stylelab.spec.errors import StylelabError


def _run(model, picasso, **kw):
    base = dict(prompt="a cat", steps=6, seed=3, size=32, style=str(picasso), precision="fp32")
    return sample(model, GuidanceSettings(**{**base, **kw}), device="cpu", progress=False)


def test_clean_estimate_inverts_the_forward_process():
    torch.manual_seed(0)
    x0, eps, abar = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.tensor(0.3)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    assert torch.allclose(guidance.clean_estimate(x_t, eps, abar), x0, atol=1e-5)


def test_guidance_window_and_every_k():
    s = GuidanceSettings(steps=10, guidance_factor=1.0, guidance_start=0.2, guidance_end=0.8, guidance_every=2)
    assert [i for i in range(10) if s.guided_at(i)] == [2, 4, 6]
    assert [i for i in range(4) if GuidanceSettings(steps=4, guidance_factor=1.0).guided_at(i)] == [0, 1, 2, 3]
    assert not any(GuidanceSettings(steps=4, guidance_factor=0.0).guided_at(i) for i in range(4))
    late = GuidanceSettings(steps=10, guidance_factor=1.0, guidance_start=0.5)
    assert [i for i in range(10) if late.guided_at(i)] == [5, 6, 7, 8, 9]


def test_in_memory_tokenizer_reads_any_text(stand_in):
    tokenizer = stand_in("embedded-sd").tokenizer
    ids = tokenizer(["A picture of a cat — in the style of Picasso <script>"]).input_ids[0]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]


@pytest.mark.parametrize("which", ["embedded-sd", "embedded-ddpm"])
def test_zero_guidance_is_the_unguided_image_bit_for_bit(stand_in, picasso, which):
    model = stand_in(which)
    plain, _ = _run(model, picasso, style=None)
    zero, record = _run(model, picasso, guidance_factor=0.0)
    assert torch.equal(plain, zero)
    assert record.timing.guided_steps == 0 and all(v is not None for v in record.history["style/gram"])


@pytest.mark.parametrize("which", ["embedded-sd", "embedded-ddpm"])
@pytest.mark.parametrize("style_loss", ["gram", "meanvar"])
def test_guidance_lowers_the_style_loss_it_guides_on(stand_in, picasso, which, style_loss):
    model = stand_in(which)
    _, unguided = _run(model, picasso, style_loss=style_loss)
    image, guided = _run(model, picasso, style_loss=style_loss, guidance_factor=0.6)
    assert guided.timing.guided_steps == 6
    assert guided.style_distances[style_loss] < unguided.style_distances[style_loss]
    assert image.shape == (1, 3, 32, 32) and 0 <= image.min() and image.max() <= 1


def test_the_fp16_style_gradient_is_not_lost_to_underflow():
    """On an H200 in fp16 a small style loss's gradient underflowed to zero in the VAE's backward and guidance
    did nothing. Here an fp16 stage whose incoming gradient (about 1e-9) is below fp16's smallest: plain, the
    gradient is all zero; scaled, it points where the fp32 gradient points."""
    eps = torch.linspace(-1, 1, 64).reshape(1, 4, 4, 4).requires_grad_(True)

    def loss(dtype):
        decoded = (eps.to(dtype) * 0.5 + 0.25).float()  # stands in for the fp16 VAE
        return (decoded ** 2).sum() * 1e-9

    plain = guidance.style_gradient(loss(torch.float16), eps, torch.float32)  # no scaling: as before
    assert not plain.any()
    scaled = guidance.style_gradient(loss(torch.float16), eps, torch.float16)
    reference = guidance.style_gradient(loss(torch.float32), eps, torch.float32)
    assert torch.allclose(scaled, reference, rtol=2e-3, atol=2e-3)


def test_same_seed_same_image_other_seed_other_image(stand_in, picasso):
    model = stand_in("embedded-sd")
    a, _ = _run(model, picasso, style=None)
    b, _ = _run(model, picasso, style=None)
    c, _ = _run(model, picasso, style=None, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_fallback_to_the_embedded_model_is_said(monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = models.load_model("CompVis/stable-diffusion-v1-4", fallback="embedded")
    assert model.origin.embedded and model.kind == "sd" and "could not be loaded" in model.origin.fallback_reason
    assert isinstance(model, StyleGuidedStableDiffusionPipeline)
    assert model.origin.name == "CompVis/stable-diffusion-v1-4"
    assert "embedded stand-in embedded-sd" in caplog.text
    ddpm = models.load_model("google/ddpm-celebahq-256", fallback="embedded")
    assert ddpm.origin.embedded and ddpm.kind == "ddpm" and isinstance(ddpm, StyleGuidedDDPMPipeline)


def test_unloadable_model_with_fallback_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StylelabError) as err:
        models.load_model("CompVis/stable-diffusion-v1-4", fallback="error")
    message = str(err.value)
    assert "CompVis/stable-diffusion-v1-4" in message and models.hub_cache() in message
    assert "make models" in message


def test_generate_command_writes_image_and_record(run_cli, picasso, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli("generate", "--model", "CompVis/stable-diffusion-v1-4", "--steps", "4", "--size", "32",
                           "--style", picasso, "--guidance-factor", "0.6", "--device", "cpu", "--quiet",
                           "--out", tmp_path / "g")
    assert code == 0, err
    record = json.loads((tmp_path / "g" / "record.json").read_text())
    assert record["model"]["embedded"] and record["model"]["fallback_reason"]
    assert set(record["style_distances"]) == {"gram", "meanvar"} and len(record["history"]["style/meanvar"]) == 4
    assert (tmp_path / "g" / "image.png").stat().st_size > 0


def test_the_style_image_keeps_its_aspect_ratio_and_the_record_says_at_which_size(run_cli, picasso, tmp_path):
    """The Picasso self-portrait is 468 x 600 (portrait): its short side becomes the output size, as in the
    original code, instead of a stretched square; Gram and MeanVar statistics need no square image."""
    from PIL import Image

    from stylelab.diffusion.guidance import style_tensor

    assert tuple(style_tensor(str(picasso), 32, None).shape) == (1, 3, 41, 32)
    wide = Image.new("RGB", (90, 30), "red")
    assert tuple(style_tensor(wide, 16, None).shape) == (1, 3, 16, 48)
    code, _, err = run_cli("generate", "--model", "embedded-sd", "--steps", "2", "--size", "32", "--style", picasso,
                           "--guidance-factor", "0.6", "--device", "cpu", "--quiet", "--out", tmp_path / "g")
    assert code == 0, err
    assert json.loads((tmp_path / "g" / "record.json").read_text())["style_size"] == [41, 32]


def test_generate_error_path_leaves_nothing(run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli("generate", "--model", "no/such-model", "--fallback", "error", "--steps", "2",
                           "--device", "cpu", "--out", tmp_path / "g")
    assert code == 2 and "no/such-model" in err and "Traceback" not in err
    assert not (tmp_path / "g").exists()


def test_a_diverging_sample_names_the_step_and_the_cause(stand_in, picasso):
    with pytest.raises(StylelabError) as err:
        _run(stand_in("embedded-sd"), picasso, size=16, steps=2, guidance_factor=1e300)
    assert str(err.value).startswith("the latents stopped being finite at step 1 of 2: sampling diverged, most "
                                      "likely because the guidance factor is too large (lower --guidance-factor)")
    assert str(err.value).endswith("Nothing was written.")


def test_guidance_without_style_is_refused():
    with pytest.raises(StylelabError, match="style image"):
        GuidanceSettings(guidance_factor=0.5).validate()


def test_auto_precision_is_fp16_on_cuda_bf16_on_a_native_cpu_else_fp32(monkeypatch, stand_in, picasso):
    """What `auto` resolves to, and a run that says what it took and why; the style loss's VGG-19 follows
    Part 1's auto, and fp32 asked for is fp32 throughout."""
    from stylelab.run import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert runtime.choose_diffusion_precision("auto", torch.device("cuda")) == ("fp16", "auto: fp16 on NVIDIA H200")
    assert runtime.choose_diffusion_precision("bf16", cpu) == ("bf16", "asked for")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "fma"})
    assert runtime.choose_diffusion_precision("auto", cpu)[0] == "fp32"
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    assert runtime.choose_diffusion_precision("auto", cpu) == ("bf16", "auto: the CPU has amx_bf16 and avx512_bf16")
    tiny_sd = stand_in("embedded-sd")
    image, record = _run(tiny_sd, picasso, precision="auto", guidance_factor=0.5, steps=3)
    assert (record.precision, record.settings.precision) == ("bf16", "bf16")
    assert record.precision_reason == "auto: the CPU has amx_bf16 and avx512_bf16"
    assert torch.isfinite(image).all() and record.style_distances["gram"] > 0
    task = guidance.GuidedSampling(tiny_sd, GuidanceSettings(prompt="a cat", steps=2, size=32, style=str(picasso)))
    assert task.precisions(cpu) == ("bf16", "auto: the CPU has amx_bf16 and avx512_bf16", "bf16")
    fp32 = guidance.GuidedSampling(tiny_sd, GuidanceSettings(prompt="a cat", steps=2, size=32, precision="fp32"))
    assert fp32.precisions(cpu) == ("fp32", "asked for", "fp32")


def test_the_model_fetch_takes_fp16_files_for_auto_on_cuda_and_full_ones_elsewhere():
    from stylelab.spec.config import model_spec
    from stylelab.diffusion.fetch import variant_of

    config = {"device": "cuda", "diffusion": {"model": "m", "revision": "r", "precision": "auto"}}
    assert model_spec(config)["precision"] == "fp16"
    for device in ("auto", "cpu", "mps"):
        assert model_spec({**config, "device": device})["precision"] == "auto"
    assert variant_of("auto") is None and variant_of("fp16") == "fp16"
