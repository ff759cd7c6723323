"""Sweeps: one experiment run over every combination of the values of one or two settings (config `sweeps:`).

`plan(config)` checks each sweep and gives its points: the spec of each, named from its values, and, for a point
whose settings equal a run the workflow makes anyway (or an earlier sweep's point), that run, so that it is made
once. Which settings a sweep may vary follows from the settings' rules: those of the experiment's command that
decide a result (`Rule.decides`), not paths; the one-layer experiments add `layer`. Torch-free.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import re
from dataclasses import dataclass

from stylelab.spec.config import COMMAND_SETTINGS, SWEEP_EXPERIMENTS, generation_spec, part1_spec, transfer_run_id
from stylelab.spec.errors import StylelabError
from stylelab.spec.layers import tutorial_name
from stylelab.spec.settings import (GuidanceSettings, TransferSettings, check_value, coerce, feature_inversion,
                                    format_number, rules_of, texture_synthesis)

# Keys of the config that are no setting of a run: where files go and what a job asks of the scheduler.
NOT_RESULTS = ("results", "images", "content", "style", "threads", "mem_mb", "max_pixels", "runs_in_one_job")


@dataclass(frozen=True)
class Point:
    name: str  # its files' name: style_weight=10, or style_weight=10_steps=300
    values: dict  # the varied settings' values
    spec: dict  # `--spec` of its command
    layer: str | None = None  # inversion and texture: the layer (`--layer`)
    same: tuple | None = None  # the run it equals: (group, layer or run) or ("sweep", sweep, point)


@dataclass(frozen=True)
class Sweep:
    name: str
    experiment: str
    settings: dict
    vary: dict
    points: tuple[Point, ...]


def _class(experiment: str):
    return GuidanceSettings if experiment == "generate" else TransferSettings


def sweepable(experiment: str) -> tuple[str, ...]:
    """The settings a sweep of `experiment` may set or vary."""
    rules = rules_of(_class(experiment))
    names = rules if experiment == "generate" else COMMAND_SETTINGS[SWEEP_EXPERIMENTS[experiment]]
    chosen = tuple(n for n in names if rules[n].decides and rules[n].kind not in ("path", "paths"))
    return chosen + (("layer",) if experiment in ("inversion", "texture") else ())


def _word(value) -> str:
    """A value in a file name: 1e6, conv_5, gram, 128+256, a-cat."""
    if isinstance(value, (list, tuple)):
        return "+".join(_word(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+]+", "-", format_number(value)).strip("-")[:40] or "-"


def _key(experiment: str, spec: dict, layer: str | None) -> str:
    """What decides a run's result, its settings' defaults filled in: equal keys, equal results."""
    cls = _class(experiment)
    full = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            for f in dataclasses.fields(cls) if f.name in rules_of(cls) and rules_of(cls)[f.name].decides}
    rules = rules_of(cls)
    full.update({k: coerce(rules[k], v) if k in rules else v for k, v in spec.items()})
    full = {k: list(v) if isinstance(v, tuple) else v for k, v in full.items() if k in rules and rules[k].decides}
    return json.dumps([experiment, layer, full], sort_keys=True, default=str)


def _existing(config: dict) -> dict[str, tuple]:
    """{key: (group, layer or run name)} of the runs the workflow makes anyway."""
    runs = {}
    for group in ("inversion", "texture"):
        for layer in config[group]["layers"]:
            runs[_key(group, part1_spec(config, group), tutorial_name(layer))] = (group, layer)
    for run in config["transfer"]["runs"]:
        runs.setdefault(_key("transfer", part1_spec(config, "transfer", run), None), ("transfer", transfer_run_id(run)))
    for run in config["diffusion"]["runs"]:
        runs.setdefault(_key("generate", generation_spec(config, run), None), ("generate", run["name"]))
    return runs


def _base(config: dict, experiment: str) -> dict:
    if experiment == "generate":
        return generation_spec(config, {"prompt": config["diffusion"]["runs"][0]["prompt"]})
    return part1_spec(config, experiment, config["transfer"]["runs"][0] if experiment == "transfer" else None)


def _checked(experiment: str, name: str, value, where: str):
    """`value` as the setting `name` takes it (a step count alone as a list for Part 1), or one line saying why not."""
    allowed = sweepable(experiment)
    if name not in allowed:
        known = name in NOT_RESULTS or name in rules_of(_class(experiment))
        why = ("decides no result (a path, or where and how the job runs)" if known
               else f"is no setting of a {experiment} run")
        guess = difflib.get_close_matches(name, allowed, n=1)
        raise StylelabError(f"{where}: '{name}' {why}" + (f" (did you mean '{guess[0]}'?)" if guess else "")
                            + f"; a {experiment} sweep can vary: {', '.join(allowed)}.")
    if name == "layer":
        try:
            return tutorial_name(value) if isinstance(value, str) else tutorial_name(str(value))
        except StylelabError as exc:
            raise StylelabError(f"{where}: {exc}") from None
    rule = rules_of(_class(experiment))[name]
    if rule.kind == "counts" and not isinstance(value, (list, tuple)):
        value = [value]
    if experiment in ("inversion", "texture") and name == "steps" and len(value) != 1:
        raise StylelabError(f"{where}: a {experiment} run takes one step count, got {value!r}.")
    problem = check_value(name, rule, value)
    if problem:
        raise StylelabError(f"{where}: {problem}")
    return coerce(rule, value)


def _validate(config: dict, experiment: str, spec: dict, layer: str | None, where: str) -> None:
    """The point's settings as its command will check them: one line for the first mistake."""
    images = config["images"]
    try:
        if experiment == "generate":
            fields = {f.name for f in dataclasses.fields(GuidanceSettings)}
            GuidanceSettings(**{k: v for k, v in spec.items() if k in fields}, style=images["style"]).validate()
        elif experiment == "transfer":
            TransferSettings(content=images["content"], style=images["style"], **spec).validate()
        else:
            make = feature_inversion if experiment == "inversion" else texture_synthesis
            make(images["content" if experiment == "inversion" else "style"], layer, **spec).validate()
    except (StylelabError, TypeError) as exc:
        raise StylelabError(f"{where}: {exc}") from None


def _sweep(config: dict, name: str, entry: dict, known: dict) -> Sweep:
    where = f"config: sweeps.{name}"
    experiment = entry["experiment"]
    settings = {k: _checked(experiment, k, v, f"{where}.settings.{k}") for k, v in entry.get("settings", {}).items()}
    vary = {k: [_checked(experiment, k, v, f"{where}.vary.{k}") for v in values] for k, values in entry["vary"].items()}
    for key in set(settings) & set(vary):
        raise StylelabError(f"{where}.settings.{key}: '{key}' is also varied; keep it in one of settings and vary.")
    if experiment in ("inversion", "texture") and "layer" not in settings and "layer" not in vary:
        raise StylelabError(f"{where}.settings: a {experiment} sweep needs a layer (settings: {{layer: conv_5}}, "
                            "or vary: {layer: [...]}).")
    points = []
    for combination in itertools.product(*vary.values()):
        values = dict(zip(vary, combination))
        chosen = {**settings, **values}
        layer = chosen.pop("layer", None)
        spec = {**_base(config, experiment), **chosen}
        point_name = "_".join(f"{k}={_word(v)}" for k, v in values.items())
        _validate(config, experiment, spec, layer, f"{where}.vary ({point_name})")
        key = _key(experiment, spec, layer)
        points.append(Point(point_name, values, spec, layer, known.get(key)))
        known.setdefault(key, ("sweep", name, point_name))
    names = [p.name for p in points]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StylelabError(f"{where}.vary: two values give the same file name {twice[0]}; make them differ in "
                            "letters or digits.")
    return Sweep(name, experiment, settings, vary, tuple(points))


def plan(config: dict) -> dict[str, Sweep]:
    """Every sweep of the config, checked, with its points, in the order of their names (config files laid over
    each other leave no other order that holds); one line for the first mistake."""
    known, entries = _existing(config), config.get("sweeps") or {}
    return {name: _sweep(config, name, entries[name], known) for name in sorted(entries)}


def duplicate_keys(text: str, where: str) -> None:
    """One line for a key given twice in one mapping of a YAML file (a second sweep of one name), which YAML
    readers silently resolve by keeping the last."""
    import yaml

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, value in node.value:
                name = key.value
                if name in seen:
                    inside = ".".join(path) or "the top level"
                    raise StylelabError(f"config: {where} line {key.start_mark.line + 1}: '{name}' is given twice in "
                                        f"{inside}; give each a name of its own.")
                seen.add(name)
                walk(value, [*path, str(name)])
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, path)

    walk(yaml.compose(text), [])
