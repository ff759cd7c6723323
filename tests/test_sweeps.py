"""Sweeps as the library plans them (stylelab.spec.sweeps): what may be varied, the points and their names, a
point equal to a run made once, and a bad sweep as one line naming the sweep and the key. The workflow's side
(jobs, figures, the report section, mistakes stopping Snakemake) is in test_workflow.py."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stylelab.spec import sweeps
from stylelab.spec.config import read_configs
from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import GuidanceSettings, TransferSettings, rules_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(monkeypatch) -> dict:
    monkeypatch.chdir(ROOT)  # the config's image paths are relative to the project
    return read_configs([ROOT / "config.yaml"])


def with_sweeps(config: dict, text: str) -> dict:
    changed = copy.deepcopy(config)
    changed["sweeps"] = yaml.safe_load(text)
    return changed


def test_what_may_be_varied_follows_the_settings_rules():
    """Only settings that decide a result: not where a run computes, nor what its record keeps, nor paths."""
    for experiment in ("inversion", "texture", "transfer", "generate"):
        allowed = sweeps.sweepable(experiment)
        rules = rules_of(GuidanceSettings if experiment == "generate" else TransferSettings)
        assert all(name == "layer" or rules[name].decides for name in allowed)
        assert not {"device", "record_every", "track_every", "content", "style", "max_pixels"} & set(allowed)
    assert "layer" in sweeps.sweepable("inversion") and "layer" not in sweeps.sweepable("transfer")
    assert {"style_weight", "steps", "preserve_colors", "scales"} <= set(sweeps.sweepable("transfer"))
    assert "style_weight" not in sweeps.sweepable("inversion")  # invert has no style term
    assert {"guidance_factor", "prompt", "cfg_scale", "guidance_every"} <= set(sweeps.sweepable("generate"))


def test_a_two_axis_sweep_has_a_point_per_combination_named_by_its_values(config):
    planned = sweeps.plan(with_sweeps(config, """
        grid: {experiment: transfer, settings: {style_loss: meanvar, steps: 50},
               vary: {style_weight: [1, 1.0e+6], content_layers: [[conv_4], [conv_2, conv_4]]}}
    """))["grid"]
    assert [p.name for p in planned.points] == [
        "style_weight=1_content_layers=conv_4", "style_weight=1_content_layers=conv_2+conv_4",
        "style_weight=1e6_content_layers=conv_4", "style_weight=1e6_content_layers=conv_2+conv_4"]
    last = planned.points[-1].spec
    assert last["style_weight"] == 1e6 and last["content_layers"] == ["conv_2", "conv_4"]
    assert last["steps"] == [50] and last["style_loss"] == "meanvar"  # a step count alone is a list of one
    assert last["style_layers"] == config["transfer"]["style_layers"]  # the rest from the section


def test_a_point_equal_to_a_run_the_workflow_makes_is_that_run(config):
    """Part 1 transfer runs, one-layer runs, generations and an earlier sweep's points are made once; defaults
    written out or left to the settings make no difference."""
    planned = sweeps.plan(with_sweeps(config, """
        a_weights: {experiment: transfer, settings: {style_loss: meanvar}, vary: {style_weight: [1, 10, 15]}}
        again: {experiment: transfer, settings: {style_loss: meanvar, preserve_colors: none},
                vary: {style_weight: [15, 30]}}
        layers: {experiment: inversion, vary: {layer: [conv_5, conv4_1]}}
        strength: {experiment: generate, vary: {guidance_factor: [0, 0.6, 0.7]}}
    """))
    assert [p.same for p in planned["a_weights"].points] == [("transfer", "meanvar_w1"),
                                                             ("transfer", "meanvar_w10"), None]
    assert [p.same for p in planned["again"].points] == [("sweep", "a_weights", "style_weight=15"), None]
    assert [p.same for p in planned["layers"].points] == [("inversion", "conv_5"), None]
    assert planned["layers"].points[1].layer == "conv_9"  # conv4_1, in the tutorial's names
    assert [p.same for p in planned["strength"].points] == [("generate", "unguided"), ("generate", "gram_s0.6"), None]


def test_the_default_configuration_sweeps_guidance_strength_at_three_new_generations(config):
    planned = sweeps.plan(config)
    assert list(planned) == ["guidance_strength"]
    assert sum(point.same is None for point in planned["guidance_strength"].points) == 3


@pytest.mark.parametrize("text, message", [
    ("s: {experiment: transfer, vary: {stlye_weight: [1, 10]}}",
     "config: sweeps.s.vary.stlye_weight: 'stlye_weight' is no setting of a transfer run (did you mean "
     "'style_weight'?); a transfer sweep can vary: "),
    ("s: {experiment: transfer, vary: {device: [cpu, cuda]}}",
     "config: sweeps.s.vary.device: 'device' decides no result (a path, or where and how the job runs)"),
    ("s: {experiment: transfer, vary: {style_weight: [1, -10]}}",
     "config: sweeps.s.vary.style_weight: style weight must be a finite number >= 0, got -10."),
    ("s: {experiment: texture, settings: {layer: conv_99}, vary: {seed: [1, 2]}}",
     "config: sweeps.s.settings.layer: unknown VGG-19 layer 'conv_99'. Valid layers: conv_1,"),
    ("s: {experiment: texture, vary: {seed: [1, 2]}}", "config: sweeps.s.settings: a texture sweep needs a layer"),
    ("s: {experiment: inversion, settings: {layer: conv_1}, vary: {steps: [[10, 20], 30]}}",
     "config: sweeps.s.vary.steps: a inversion run takes one step count, got [10, 20]."),
    ("s: {experiment: generate, vary: {guidance_start: [0.5, 0.9], guidance_end: [0.2, 0.6]}}",
     "config: sweeps.s.vary (guidance_start=0.5_guidance_end=0.2): the guidance window needs 0 <= start <= end"),
    ("s: {experiment: generate, settings: {guidance_factor: 1}, vary: {guidance_factor: [0, 1]}}",
     "config: sweeps.s.settings.guidance_factor: 'guidance_factor' is also varied"),
    ('s: {experiment: generate, vary: {prompt: ["a cat!", "a cat?"]}}',
     "config: sweeps.s.vary: two values give the same file name prompt=a-cat"),
], ids=["unknown-setting", "not-sweepable", "refused-value", "unknown-layer", "no-layer", "steps-list",
        "bad-combination", "set-and-varied", "same-name"])
def test_a_bad_sweep_is_one_line_naming_the_sweep_and_the_key(config, text, message):
    with pytest.raises(StylelabError) as caught:
        sweeps.plan(with_sweeps(config, text))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_sweep_given_twice_in_one_file_is_found():
    text = "sweeps:\n  w:\n    experiment: transfer\n  w:\n    experiment: texture\n"
    with pytest.raises(StylelabError, match=r"^config: extra.yaml line 4: 'w' is given twice in sweeps; give each"):
        sweeps.duplicate_keys(text, "extra.yaml")
    sweeps.duplicate_keys((ROOT / "config.yaml").read_text(), "config.yaml")  # the project's own have none
