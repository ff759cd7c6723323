"""The optimisation engine on real small inputs: with the original (caffe) VGG-19 weights where a test's outcome
depends on what the network sees, with random ones where it does not."""

import json

import pytest
import torch

from stylelab.spec import records
from stylelab.engine import transfer
from stylelab.spec.errors import StylelabError
from stylelab.engine.transfer import run_transfer, write_outputs
from stylelab.spec.settings import feature_inversion, texture_synthesis


def test_style_transfer_halves_the_loss_in_50_steps(tiny_settings):
    result = run_transfer(tiny_settings(size=64, steps=(50,), weights="caffe"), progress=False)
    history = result.record.history
    assert history["step"][0] == 1 and history["step"][-1] == 50 and len(history["total"]) == 50
    assert history["total"][-1] <= 0.5 * history["total"][0]
    assert result.record.final_losses["total"] <= 0.5 * result.record.initial_loss
    assert set(result.record.final_losses) == {"total", "content/conv_4", *(f"style/conv_{i}" for i in range(1, 6))}


def test_step_10_of_a_20_step_run_equals_a_10_step_run(tiny_settings):
    long = run_transfer(tiny_settings(size=48, steps=(10, 20)), progress=False)
    short = run_transfer(tiny_settings(size=48, steps=(10,)), progress=False)
    assert torch.equal(long.images[10], short.images[10])
    assert not torch.equal(long.images[10], long.images[20])
    assert long.record.history["total"][:10] == short.record.history["total"]


@pytest.mark.parametrize("style_loss", ["gram", "meanvar"])
def test_noise_init_is_seeded(tiny_settings, style_loss):
    kw = dict(init="noise", steps=(3,), style_loss=style_loss, style_weight=10.0)
    a = run_transfer(tiny_settings(seed=7, **kw), progress=False)
    b = run_transfer(tiny_settings(seed=7, **kw), progress=False)
    c = run_transfer(tiny_settings(seed=8, **kw), progress=False)
    assert torch.equal(a.images[3], b.images[3])
    assert not torch.equal(a.images[3], c.images[3])


def test_feature_inversion_reduces_its_loss(cat):
    settings = feature_inversion(str(cat), "relu3_1", size=32, steps=(30,), device="cpu")
    result = run_transfer(settings, progress=False)
    rec = result.record
    assert rec.kind == "inversion" and rec.settings.content_layers == ["relu_5"]
    assert rec.settings.style_layers == [] and rec.settings.init == "noise"
    assert rec.history["total"][-1] < 0.2 * rec.history["total"][0]


def test_texture_synthesis_reduces_its_loss(picasso):
    settings = texture_synthesis(str(picasso), "pool_2", size=32, steps=(30,), device="cpu")
    result = run_transfer(settings, progress=False)
    rec = result.record
    assert rec.kind == "texture" and rec.settings.style_layers == ["pool_2"]
    assert rec.image_size == [41, 32]  # the style image's own shape: short side 32
    assert rec.history["total"][-1] < 0.2 * rec.history["total"][0]


def test_adam_optimiser_runs_and_descends(tiny_settings):
    result = run_transfer(tiny_settings(optimizer="adam", steps=(30,), lr=0.02), progress=False)
    hist = result.record.history["total"]
    assert hist[-1] < hist[0] and result.record.settings.lr == 0.02


def test_projected_gradient_by_hand():
    image = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0])
    grad = torch.tensor([2.0, -2.0, 3.0, -4.0, 4.0])
    # descent moves along -grad: pixel 0 would go below 0 and pixel 3 above 1; the others stay inside
    transfer.project_gradient_(image, grad)
    assert grad.tolist() == [0.0, -2.0, 3.0, 0.0, 4.0]


def test_bounds_modes_differ_and_are_recorded(tiny_settings):
    proj = run_transfer(tiny_settings(init="noise", steps=(5,)), progress=False)
    clamp = run_transfer(tiny_settings(init="noise", steps=(5,), bounds="clamp"), progress=False)
    assert proj.record.settings.bounds == "project" and clamp.record.settings.bounds == "clamp"
    assert not torch.equal(proj.images[5], clamp.images[5])


def test_pixels_stay_in_range(tiny_settings):
    result = run_transfer(tiny_settings(init="noise", steps=(5,)), progress=False)
    img = result.images[5]
    assert img.min() >= 0 and img.max() <= 1


def test_record_holds_what_a_report_needs(tiny_settings, tmp_path):
    result = run_transfer(tiny_settings(steps=(5, 10)), progress=False)
    written = write_outputs(result, tmp_path)
    assert sorted(p.name for p in written) == ["record.json", "step_10.png", "step_5.png"]
    rec = json.loads((tmp_path / "record.json").read_text())
    for key in ("settings", "history", "timing", "device", "precision", "weights", "seed", "versions", "outputs",
                "images", "final_losses"):
        assert key in rec, key
    assert rec["settings"]["size"] == 32 and rec["image_size"] == [32, 48]
    assert rec["timing"]["time_per_step_s"] > 0 and rec["versions"]["torch"] == torch.__version__.split("+")[0]
    assert rec["images"]["5"]["file"] == "step_5.png"
    assert rec["schema_version"] == records.SCHEMA_VERSION
    assert records.read_record(tmp_path / "record.json") == result.record  # written and read back alike


def test_a_record_without_schema_version_still_loads(tiny_settings, tmp_path):
    """Records written before the schema version existed (the same layout) load as version 0."""
    result = run_transfer(tiny_settings(steps=(2,)), progress=False)
    write_outputs(result, tmp_path)
    data = json.loads((tmp_path / "record.json").read_text())
    del data["schema_version"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = records.read_record(tmp_path / "old.json")
    assert old.schema_version == 0 and old.final_losses == result.record.final_losses
    assert old.settings == result.record.settings and old.images == result.record.images


def test_initial_loss_is_the_loss_at_step_1_whatever_is_recorded(tiny_settings):
    """With record_every > 1 the first recorded step is not step 1; the record's loss at the start still is."""
    every = run_transfer(tiny_settings(steps=(6,)), progress=False).record
    sparse = run_transfer(tiny_settings(steps=(6,), record_every=3), progress=False).record
    assert sparse.history["step"] == [3, 6]
    assert sparse.initial_loss == every.initial_loss == every.history["total"][0]
    assert sparse.initial_loss != sparse.history["total"][0]


@pytest.mark.parametrize("change,match", [
    (dict(steps=(0,)), "steps must be positive"),
    (dict(steps=(-5,)), "steps must be positive"),
    (dict(style_loss="wasserstein"), "unknown style loss"),
    (dict(style_layers=["pool_1"]), "pool_2, pool_4"),
    (dict(content_layers=["conv_99"]), "Valid layers"),
    (dict(style_weight=-1.0), "style weight must be"),
    (dict(content_weight=0.0, style_weight=0.0), "nothing to optimise"),
    (dict(lr=0.0), "learning rate must be a finite number above 0"),
    (dict(size=16, style_layers=["pool_16"]), "too small for layer pool_16"),
])
def test_bad_settings_are_refused_before_any_work(tiny_settings, change, match):
    with pytest.raises(StylelabError, match=match):
        run_transfer(tiny_settings(**change), progress=False)


def test_the_bf16_network_scores_and_differentiates_like_fp32(cat, picasso):
    """The objective and its gradient for one image, with the network in bf16 (emulated where the CPU lacks it:
    slower, the same numbers) against fp32: the losses and the image stay fp32 in both."""
    from stylelab.engine import images
    from stylelab.engine.losses import Objective
    from stylelab.engine.vgg import VGGFeatures

    content = images.load_image(cat, 32)
    style = images.load_image(picasso, tuple(content.shape[-2:]))
    start = (content + 0.1 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    results = {}
    for precision in ("fp32", "bf16"):
        vgg = VGGFeatures("caffe", precision=precision)
        objective = Objective("gram", 1.0, 1e6, 0.0)
        with torch.no_grad():
            objective.set_content(vgg(content, ["conv_4"]))
            objective.set_style(vgg(style, [f"conv_{i}" for i in range(1, 6)]))
        image = start.clone().requires_grad_(True)
        total, _ = objective(vgg(image, objective.layers), image)
        assert total.dtype == torch.float32
        total.backward()
        results[precision] = (float(total), image.grad.flatten())
    (loss32, grad32), (loss16, grad16) = results["fp32"], results["bf16"]
    assert abs(loss16 / loss32 - 1) < 0.02
    assert torch.nn.functional.cosine_similarity(grad32, grad16, dim=0) > 0.98
    assert not torch.equal(grad32, grad16)  # the bf16 network did compute in bf16


def test_a_bf16_run_ends_where_the_fp32_run_does_and_says_what_it_computed_in(tiny_settings):
    """Adam (smooth, unlike L-BFGS without a line search, whose path rounding changes chaotically) for 40 steps
    at 32 px: the final objectives within BF16_TOLERANCE. (L-BFGS at 64 px, 1000 steps, every default run:
    the table in docs/performance.md, "Precision".)"""
    runs = {p: run_transfer(tiny_settings(steps=(40,), optimizer="adam", lr=0.02, weights="caffe", precision=p),
                            progress=False) for p in ("fp32", "bf16")}
    fp32, bf16 = (runs[p].record for p in ("fp32", "bf16"))
    assert (fp32.precision, fp32.precision_reason, bf16.precision) == ("fp32", "asked for", "bf16")
    assert fp32.settings.precision == "fp32" and bf16.settings.precision == "bf16"
    assert abs(bf16.final_losses["total"] / fp32.final_losses["total"] - 1) <= BF16_TOLERANCE


BF16_TOLERANCE = 0.03


def test_auto_precision_takes_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from stylelab.run import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "amx_bf16", "amx_tile"})
    assert runtime.choose_precision("auto", cpu) == ("bf16", "auto: the CPU has amx_bf16")
    assert runtime.choose_precision("auto", cpu, "transfer") == ("bf16", "auto: the CPU has amx_bf16")
    # One-layer runs stay fp32 under auto (their objective falls towards zero); asked for, bf16 is bf16.
    for kind in ("inversion", "texture"):
        chosen, why = runtime.choose_precision("auto", cpu, kind)
        assert chosen == "fp32" and f"fp32 for an {kind}" in why or f"fp32 for a {kind}" in why
        assert runtime.choose_precision("bf16", cpu, kind) == ("bf16", "asked for")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "fma"})
    chosen, why = runtime.choose_precision("auto", cpu)
    assert chosen == "fp32" and "no native bfloat16" in why
    assert runtime.choose_precision("bf16", cpu) == ("bf16", "asked for")


def test_device_auto_takes_cuda_then_mps_then_the_cpu(monkeypatch):
    from stylelab.run import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.resolve_device("auto").type == "cpu"
    with pytest.raises(StylelabError, match="no Apple Metal GPU"):
        runtime.resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.resolve_device("auto").type == "cuda"
