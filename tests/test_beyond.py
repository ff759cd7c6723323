"""Part 3, beyond the assignment: colour preservation, coarse-to-fine scales and blended styles.

The contract: luminance transfer keeps the content's colour channels (I and Q of YIQ) within 1/255 in the
saved PNG; colour matching gives the style image the content's per-channel mean and covariance; one scale,
and one style of weight 1 (or a blend whose other weights are 0), are today's run bit for bit; a
coarse-to-fine record keeps each scale's history and resumes across a scale boundary bit for bit. The bad
values are in tests/test_bad_inputs.py's table.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from stylelab.run import checkpoint
from stylelab.engine import colour, images
from stylelab.run.checkpoint import CheckpointPolicy
from stylelab.engine.losses import Objective, blend_targets
from stylelab.run.stopping import Interval
from stylelab.engine.transfer import run_transfer, write_outputs
from stylelab.spec.settings import TransferSettings


def _png(tensor: torch.Tensor) -> torch.Tensor:
    """The image as the saved PNG holds it (8 bits per channel), back as a tensor."""
    data = images.png_bytes(tensor)
    array = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


@pytest.mark.parametrize("style_loss", ["gram", "meanvar"])
def test_luminance_transfer_keeps_the_content_colour_channels(tiny_settings, cat, style_loss):
    weight = 1e6 if style_loss == "gram" else 10.0
    result = run_transfer(tiny_settings(preserve_colors="luminance", style_loss=style_loss, style_weight=weight,
                                        weights="caffe"), progress=False)
    content = images.load_image(str(cat), 32).to(torch.float64)
    for step, image in result.images.items():
        assert image.shape == content.shape
        saved = colour.rgb_to_yiq(_png(image))
        want = colour.rgb_to_yiq(content)
        assert (saved[:, 1:] - want[:, 1:]).abs().max() <= 1 / 255, step  # I and Q: the content's
        # ... while the luminance is the transfer's own, not the content's.
        assert (saved[:, :1] - want[:, :1]).abs().mean() > 0.01


def test_luminance_keeps_colour_even_where_the_luminance_leaves_the_rgb_cube():
    content = torch.tensor([[[[0.9, 0.1]], [[0.1, 0.8]], [[0.1, 0.2]]]])  # saturated red and green
    for y in (torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2), torch.full((1, 1, 1, 2), 0.5)):
        rgb = colour.with_content_colour(y, content)
        assert rgb.min() >= 0 and rgb.max() <= 1
        assert torch.allclose(colour.rgb_to_yiq(rgb)[:, 1:], colour.rgb_to_yiq(content)[:, 1:], atol=1e-6)


def test_colour_matching_gives_the_style_the_content_mean_and_covariance(tiny_settings, cat, picasso):
    content = images.load_image(str(cat), 64)
    style = images.load_image(str(picasso), tuple(content.shape[-2:]))
    matched = colour.match_colours(style, content)
    mean_m, cov_m = colour.colour_stats(matched)
    mean_c, cov_c = colour.colour_stats(content)
    assert (mean_m - mean_c).abs().max() < 1e-3
    assert (cov_m - cov_c).abs().max() < 1e-3
    mean_s, cov_s = colour.colour_stats(style)
    assert (mean_s - mean_c).abs().max() > 0.05  # the test means something: the style's colours differ
    # The matched style drives a transfer: it runs, and the run's record says the mode.
    result = run_transfer(tiny_settings(preserve_colors="match", steps=(4,)), progress=False)
    assert result.record.settings.preserve_colors == "match"


def test_one_scale_is_todays_run_bit_for_bit(tiny_settings):
    today = run_transfer(tiny_settings(), progress=False)
    one_scale = run_transfer(tiny_settings(scales=[32], size="auto"), progress=False)
    for step in (6, 12):
        assert torch.equal(one_scale.images[step], today.images[step])
    assert one_scale.record.final_losses == today.record.final_losses
    assert one_scale.record.scale_history == [] and one_scale.record.image_size == today.record.image_size


@pytest.mark.parametrize("blend", [dict(style_blend=[1.0]), dict(style=None, style_blend=[1.0, 0.0]),
                                   dict(style=None, style_blend=[2.5, 0.0])], ids=["one-style", "1-0", "2.5-0"])
def test_one_style_of_weight_one_is_todays_run_bit_for_bit(tiny_settings, picasso, starry, blend):
    today = run_transfer(tiny_settings(), progress=False)
    if blend.get("style", 1) is None:
        blend = {**blend, "style": [str(picasso), str(starry)]}
    blended = run_transfer(tiny_settings(**blend), progress=False)
    for step in (6, 12):
        assert torch.equal(blended.images[step], today.images[step])
    assert blended.record.final_losses == today.record.final_losses
    assert blended.record.images["12"].distances == today.record.images["12"].distances


def test_a_blend_mixes_the_style_statistics_per_layer(tiny_settings, picasso, starry):
    a = {"conv_1": (torch.full((1, 2, 2), 1.0),)}
    b = {"conv_1": (torch.full((1, 2, 2), 3.0),)}
    assert torch.allclose(blend_targets([a, b], [0.7, 0.3])["conv_1"][0], torch.full((1, 2, 2), 1.6))
    # MeanVar targets blend mean and variance alike.
    features = [{"conv_1": torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(i))} for i in (1, 2)]
    objective = Objective("meanvar")
    objective.set_style(features, [0.25, 0.75])
    one, two = (Objective("meanvar") for _ in range(2))
    one.set_style(features[0])
    two.set_style(features[1])
    for k in range(2):
        want = 0.25 * one.style_targets["conv_1"][k] + 0.75 * two.style_targets["conv_1"][k]
        assert torch.allclose(objective.style_targets["conv_1"][k], want)
    # The weights are shares: 7 and 3 are 0.7 and 0.3.
    settings = tiny_settings(style=[str(picasso), str(starry)], style_blend=[7, 3])
    settings.validate()
    assert settings.blend_weights == pytest.approx([0.7, 0.3])
    halves = run_transfer(tiny_settings(style=[str(picasso), str(starry)], style_blend=[0.5, 0.5], steps=(3,)),
                          progress=False)
    equal = run_transfer(tiny_settings(style=[str(picasso), str(starry)], steps=(3,)), progress=False)
    assert torch.equal(halves.images[3], equal.images[3])  # default: equal shares
    assert halves.record.settings.style == [str(picasso), str(starry)]


def test_coarse_to_fine_keeps_each_scale_and_ends_at_the_last(tiny_settings, tmp_path):
    # The real network: the last scale's head start below is what it sees in the coarser result.
    settings = tiny_settings(size="auto", scales=[16, 24, 32], scale_steps=[5, 4], steps=(3, 6), weights="caffe")
    result = run_transfer(settings, progress=False)
    record = result.record
    assert [entry["size"] for entry in record.scale_history] == [16, 24]
    assert [entry["steps"] for entry in record.scale_history] == [5, 4]
    assert [entry["history"]["step"] for entry in record.scale_history] == [[1, 2, 3, 4, 5], [1, 2, 3, 4]]
    assert record.history["step"] == [1, 2, 3, 4, 5, 6] and record.timing.steps == 15
    assert record.settings.size == 32 and record.image_size == [32, 48] and result.images[6].shape[-2:] == (32, 48)
    times = [e["time_s"] for e in record.scale_history] + [record.history["time_s"][0]]
    assert times == sorted(times)  # one clock for the whole run
    # The last scale starts from the coarser result: from noise, it begins far below where noise begins.
    from_noise = dict(init="noise", steps=(2,))
    coarse = run_transfer(dataclasses.replace(settings, **from_noise), progress=False)
    single = run_transfer(tiny_settings(weights="caffe", **from_noise), progress=False)
    assert coarse.record.history["total"][0] < 0.5 * single.record.history["total"][0]
    paths = write_outputs(result, tmp_path)
    assert {p.name for p in paths} == {"step_3.png", "step_6.png", "record.json"}
    # The default steps per coarser scale are the last scale's.
    plain = TransferSettings(**{**dataclasses.asdict(settings), "scale_steps": None})
    assert run_transfer(plain, progress=False).record.settings.scale_steps == [6, 6]


def test_coarse_to_fine_resumes_across_a_scale_bit_for_bit(tiny_settings, monkeypatch, tmp_path):
    monkeypatch.setenv(checkpoint.CACHE_ENV, str(tmp_path / "cache"))
    settings = tiny_settings(size="auto", scales=[16, 32], scale_steps=[6], steps=(8,))
    reference = run_transfer(settings, progress=False)

    from stylelab.run import runner

    original = runner._checkpoint

    def interrupt(task, store, n, run, clock):
        original(task, store, n, run, clock)
        if n == 10:  # after the checkpoint of step 8: two steps into the second scale
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_checkpoint", interrupt)
    policy = CheckpointPolicy(every=Interval(steps=4))
    with pytest.raises(KeyboardInterrupt):
        run_transfer(settings, progress=False, checkpoints=policy)
    monkeypatch.setattr(runner, "_checkpoint", original)
    resumed = run_transfer(settings, progress=False, checkpoints=policy)
    assert resumed.record.resumed_from == [8]
    assert torch.equal(resumed.images[8], reference.images[8])
    assert resumed.record.scale_history[0]["history"]["total"] == reference.record.scale_history[0]["history"]["total"]
    assert resumed.record.history["total"] == reference.record.history["total"]
