"""One definition per setting: the command line, the checks, the config schema and the spec all come from
stylelab.spec.settings, and agree with each other field by field."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from stylelab.spec import config as workflow_config
from stylelab.cli import _settings, build_parser
from stylelab.spec.config import COMMAND_SETTINGS
from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import GuidanceSettings, ModelChoice, TransferSettings, check_value, rules_of, schema_of

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())


def test_the_schema_file_is_the_one_the_settings_make():
    """workflow/schemas/config.schema.yaml is written by `stylelab config-schema --write`; it must be current."""
    assert (ROOT / workflow_config.SCHEMA_FILE).read_text() == workflow_config.schema_yaml(), \
        "run `stylelab config-schema --write` and commit the schema"


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("command", sorted(COMMAND_SETTINGS))
def test_each_part1_option_is_its_setting(command):
    """Every setting a Part 1 command takes is an option with the setting's choices and help."""
    options = {a.dest: a for a in _subparser(command)._actions}
    rules = rules_of(TransferSettings)
    for name in COMMAND_SETTINGS[command]:
        action = options[name]
        assert action.option_strings == ["--" + name.replace("_", "-")]
        assert tuple(action.choices or ()) == rules[name].choices
        assert action.help.startswith(rules[name].help)


def test_generate_takes_every_guidance_setting():
    options = {a.dest for a in _subparser("generate")._actions}
    expected = {n for cls in (GuidanceSettings, ModelChoice) for n, rule in rules_of(cls).items() if rule.cli}
    assert expected <= options


@pytest.mark.parametrize("cls", [TransferSettings, GuidanceSettings])
def test_schema_and_checks_agree_on_each_setting(cls):
    """For each setting in the config schema, a value the schema refuses is refused by validate's checks too,
    and one it accepts is accepted (probing each kind's edges)."""
    # Not infinity: JSON has none, so the schema cannot say "finite"; YAML's .inf is refused by the run's
    # check with one line (tests/test_bad_inputs.py).
    probes = [None, -1, 0, 1, 7, 8, 0.5, 1.0, 1e6, "auto", "gram", "nope", "fp16", [], [1], [0], [2.0], ["conv_1"],
              ["conv_99"]]
    schema = workflow_config.config_schema()
    defs = {"$defs": schema["$defs"]}
    for name, rule in rules_of(cls).items():
        if rule.kind in ("path", "init", "text"):
            continue
        validator = jsonschema.Draft202012Validator({**schema_of(cls, name), **defs})
        for value in probes:
            if rule.kind == "layers" and value == []:
                continue  # the config names layers only where it needs some: its lists have one or more
            try:
                problem = check_value(name, rule, value)
            except StylelabError:
                problem = "refused"  # a layer name that is not one
            assert validator.is_valid(value) == (problem is None), (name, value, problem)


# Each Part 1 run of the config as its rule passes it: (command, group, index of the transfer run).
RULE_RUNS = [("invert", "inversion", None), ("texture", "texture", None),
             *(("transfer", "transfer", i) for i in range(len(CONFIG["transfer"]["runs"])))]


@pytest.mark.parametrize("command, group, run", RULE_RUNS)
def test_a_rule_spec_gives_the_settings_its_options_give(tmp_path, command, group, run):
    """The spec a rule passes is the same run as its settings given as options one by one, and every setting of
    the spec reaches the run's settings."""
    spec = workflow_config.part1_spec(CONFIG, group, None if run is None else CONFIG[group]["runs"][run])
    inputs = {"invert": ["--content", "c.png", "--layer", "conv_1"], "texture": ["--style", "s.png", "--layer",
              "pool_2"], "transfer": ["--content", "c.png", "--style", "s.png"]}[command]
    options = []
    for name, value in spec.items():
        if value is not None:  # None is the setting's default, which an option cannot spell
            options += ["--" + name.replace("_", "-"), *map(str, value if isinstance(value, list) else [value])]
    layer = {"invert": "conv_1", "texture": "pool_2", "transfer": None}[command]
    by_spec = _settings(build_parser().parse_args([command, "--spec", workflow_config.spec_text(spec), *inputs,
                                                   "--out", str(tmp_path)]), layer)
    by_hand = _settings(build_parser().parse_args([command, *options, *inputs, "--out", str(tmp_path)]), layer)
    assert by_spec == by_hand
    for name, value in spec.items():
        got = getattr(by_spec, name)
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, name


def test_an_option_wins_over_the_spec(tmp_path):
    args = build_parser().parse_args(["invert", "--spec", json.dumps({"steps": [5], "seed": 3}), "--seed", "9",
                                      "--content", "c.png", "--layer", "conv_1", "--out", str(tmp_path)])
    settings = _settings(args)
    assert (settings.steps, settings.seed, settings.init, settings.kind) == ([5], 9, "noise", "inversion")


@pytest.mark.parametrize("spec,says", [
    ({"style_weight": 1}, "'invert' takes no setting 'style_weight'"),
    ({"steps": [0]}, "steps must be positive whole numbers"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ({"seed": 2**63}, "seed must be a whole number >= 0 and below 2**63"),
])
def test_a_bad_spec_is_one_clear_line(run_cli, tmp_path, cat, spec, says):
    code, _, err = run_cli("invert", "--spec", json.dumps(spec), "--content", cat, "--layer", "conv_1",
                           "--out", tmp_path / "out", "--quiet")
    assert code == 2 and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "out").exists()
