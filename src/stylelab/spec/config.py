"""The workflow's configuration: its schema and the spec each rule hands its run, both made from stylelab.spec.settings.

Which config key holds which setting is said once, in the tables below. Imports nothing heavy: the Snakefile reads it.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import (FINITE, INITS, LAYER_ENUM, GuidanceSettings, ModelChoice, TransferSettings,
                                    describe, fetch_precision, format_number, schema_of)

SCHEMA_FILE = "workflow/schemas/config.schema.yaml"

# Part 1 settings at the top level of the config, shared by every Part 1 run.
NETWORK_SETTINGS = ("weights", "device", "precision", "size", "optimizer", "lr", "bounds")
# The settings each Part 1 section holds (beside its layers or runs), in the config's order.
SECTION_SETTINGS = {
    "inversion": ("content_weight", "tv_weight", "init", "steps", "seed"),
    "texture": ("style_loss", "style_weight", "tv_weight", "init", "steps", "seed"),
    "transfer": ("content_layers", "style_layers", "content_weight", "tv_weight", "init", "steps", "seed"),
}
# A transfer run (in transfer.runs and diffusion.transfer.runs) sets these; the section gives the rest.
TRANSFER_RUN_SETTINGS = ("style_loss", "style_weight")
# Part 2: diffusion's own keys, and those of each of its runs (the rest of GuidanceSettings keeps its default).
DIFFUSION_MODEL = ("model", "revision", "fallback")
DIFFUSION_SETTINGS = ("steps", "seed", "size", "cfg_scale", "precision")
GUIDANCE_WINDOW = {"start": "guidance_start", "end": "guidance_end", "every": "guidance_every"}
GENERATION_RUN_SETTINGS = ("prompt", "style_loss", "guidance_factor")
# Part 3: style transfers with these settings of the transfer section; its experiments in the report's order.
PART3_FROM_TRANSFER = ("content_layers", "style_layers", "content_weight", "tv_weight", "init", "seed")
PART3_EXPERIMENTS = ("colour", "scales", "blend")
SCALE_RUN_SETTINGS = ("scales", "scale_steps", "steps")
PART3_SETTINGS = ("preserve_colors", "style_blend", "scales", "scale_steps")
# Sweeps (stylelab.spec.sweeps): the experiments a sweep may run, and the command of each.
SWEEP_EXPERIMENTS = {"inversion": "invert", "texture": "texture", "transfer": "transfer", "generate": "generate"}
SWEEP_NAME = "^[A-Za-z0-9][A-Za-z0-9_-]*$"
# The settings each Part 1 command takes beside its images and layer.
COMMAND_SETTINGS = {
    "invert": NETWORK_SETTINGS + SECTION_SETTINGS["inversion"] + ("record_every",),
    "texture": NETWORK_SETTINGS + SECTION_SETTINGS["texture"] + ("record_every",),
    "transfer": NETWORK_SETTINGS + SECTION_SETTINGS["transfer"] + TRANSFER_RUN_SETTINGS + PART3_SETTINGS
    + ("record_every",),
}


def part1_spec(config: dict, group: str, run: dict | None = None, steps: list[int] | None = None) -> dict:
    """The settings of one Part 1 run of `group` as its command's --spec takes them (the layer and images beside it);
    `run` is one entry of a `runs` list, `steps` replaces the section's."""
    spec: dict[str, Any] = {name: config[name] for name in NETWORK_SETTINGS}
    spec.update({name: config[group][name] for name in SECTION_SETTINGS[group]})
    steps = steps if steps is not None else spec["steps"]
    spec["steps"] = whole_steps([steps] if isinstance(steps, (int, float)) else steps)
    if run is not None:
        spec.update({name: run[name] for name in TRANSFER_RUN_SETTINGS})
    return spec


def transfer_run_id(run: dict) -> str:
    """A transfer run's name in file names and labels: its style loss and weight (gram_w1e6)."""
    return f"{run['style_loss']}_w{format_number(run['style_weight'])}"


def part3_runs(config: dict) -> dict[str, dict[str, dict]]:
    """{experiment: {run name: what the run sets beside the shared settings}} of Part 3, in the config's order."""
    part3 = config["part3"]
    colour = {f"{mode}_{transfer_run_id(run)}": {**run, "preserve_colors": mode}
              for mode in part3["colour"]["modes"] for run in part3["colour"]["runs"]}
    loss = {name: part3["scales"][name] for name in TRANSFER_RUN_SETTINGS}
    scales = {run["name"]: {**loss, **{k: run[k] for k in SCALE_RUN_SETTINGS if k in run}}
              for run in part3["scales"]["runs"]}
    blend = {"w" + "-".join(map(format_number, weights)): {name: part3["blend"][name] for name in TRANSFER_RUN_SETTINGS}
             | {"style_blend": list(weights)} for weights in part3["blend"]["weights"]}
    return {"colour": colour, "scales": scales, "blend": blend}


def part3_spec(config: dict, experiment: str, name: str) -> dict:
    """The settings of one Part 3 run, as `stylelab transfer --spec` takes them (the images beside it)."""
    spec: dict[str, Any] = {key: config[key] for key in NETWORK_SETTINGS}
    spec.update({key: config["transfer"][key] for key in PART3_FROM_TRANSFER})
    run = dict(part3_runs(config)[experiment][name])
    spec["steps"] = whole_steps([run.pop("steps", config["part3"]["steps"])])
    if "scales" in run:
        spec["size"] = run["scales"][-1]  # the last scale is the output size
    spec.update(run)
    return spec


def part3_styles(config: dict, experiment: str) -> list[str]:
    """The style images of a Part 3 experiment's runs: the blend's own, else the config's style image."""
    return list(config["part3"]["blend"]["styles"]) if experiment == "blend" else [config["images"]["style"]]


def whole_steps(steps) -> list:
    """Step counts sorted, a whole number written as a float (YAML's 1.0e+3) as the int it is."""
    return sorted(int(s) if isinstance(s, float) and s.is_integer() else s for s in steps)


def generation_spec(config: dict, run: dict) -> dict:
    """The settings of one diffusion run, as `stylelab generate --spec` takes them."""
    diffusion = config["diffusion"]
    spec: dict[str, Any] = {name: diffusion[name] for name in DIFFUSION_MODEL + DIFFUSION_SETTINGS}
    spec["steps"] = max(1, round(diffusion["steps"] * run.get("steps_factor", 1)))
    spec.update({setting: diffusion["guidance"][key] for key, setting in GUIDANCE_WINDOW.items()})
    spec.update({name: run[name] for name in GENERATION_RUN_SETTINGS if name in run})
    spec.update(weights=config["weights"], device=config["device"])
    return spec


def model_spec(config: dict) -> dict:
    """What the `models` rule fetches (`stylelab models fetch --spec`): the model at its revision and precision."""
    diffusion = config["diffusion"]
    spec = {name: diffusion[name] for name in ("model", "revision")}
    spec["precision"] = fetch_precision(diffusion["precision"], config["device"])
    return spec


def check_input_images(config: dict) -> None:
    """One line for the first input image that is missing or not an image, before any job is planned."""
    from stylelab.spec.files import check_image_file

    named = {"images.content": config["images"]["content"], "images.style": config["images"]["style"]}
    named.update({f"part3.blend.styles[{i}]": path for i, path in enumerate(config["part3"]["blend"]["styles"])})
    for key, path in named.items():
        try:
            check_image_file(path, config["jobs"]["max_pixels"])
        except StylelabError as exc:
            raise StylelabError(f"config: {key}: {exc}") from None


def layer_jobs(config: dict, group: str) -> dict[str, list[str]]:
    """{job name: its layers}: a job per layer, or (jobs.runs_in_one_job) one running them all, named by its
    layers joined with + (conv_1+relu_1+...), as its log and benchmark are."""
    layers = list(config[group]["layers"])
    if config["jobs"].get("runs_in_one_job") and len(layers) > 1:
        return {"+".join(layers): layers}
    return {layer: [layer] for layer in layers}


def read_configs(paths) -> dict:
    """Config files laid over each other in order (a mapping merged key by key, as Snakemake does)."""
    import yaml

    merged: dict = {}
    for path in paths:
        try:
            with open(path) as fh:
                _lay_over(merged, yaml.safe_load(fh) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise StylelabError(f"cannot read the config file {path} ({exc}).") from None
    return merged


def _lay_over(base: dict, top: dict) -> None:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _lay_over(base[key], value)
        else:
            base[key] = value


def spec_text(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def _bare(node: dict) -> dict:
    return {k: v for k, v in node.items() if k != "description"}


# Schema nodes several keys share, named once under $defs (from the settings' rules).
SHARED = {
    "steps": _bare(schema_of(GuidanceSettings, "steps")),
    "seed": _bare(schema_of(TransferSettings, "seed")),
    "weight": _bare(schema_of(TransferSettings, "style_weight")),
    "style_loss": _bare(schema_of(TransferSettings, "style_loss")),
    "init": _bare(schema_of(TransferSettings, "init", enum=list(INITS))),  # the config names no init image
}


def _setting(cls, name: str, **narrow) -> dict:
    """A setting's schema node, as a $ref to a shared node where it is one (narrowed by `narrow`)."""
    node = schema_of(cls, name, **({"enum": list(INITS)} if name == "init" else {}))
    bare = _bare(node)
    for key, shared in SHARED.items():
        if bare == shared:
            return {"description": node["description"], "$ref": f"#/$defs/{key}", **narrow}
        if bare.get("items") == shared:
            return {**node, "items": {"$ref": f"#/$defs/{key}"}, **narrow}
    return schema_of(cls, name, **narrow)


def _closed(properties: dict, description: str | None = None, required=None) -> dict:
    return {**({"description": description} if description else {}), "type": "object",
            "additionalProperties": False, "required": list(properties if required is None else required),
            "properties": properties}


def _runs(items: dict, description: str | None = None) -> dict:
    return {**({"description": description} if description else {}), "type": "array", "minItems": 1,
            "uniqueItems": True, "items": items}


def _name(description: str) -> dict:
    return {"description": description, "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}


def _transfer_runs() -> dict:
    return _runs(_closed({"style_loss": _setting(TransferSettings, "style_loss"),
                          "style_weight": _setting(TransferSettings, "style_weight", exclusiveMinimum=0)}),
                 "the runs, one per style loss and weight")


def _part1_section(group: str, description: str) -> dict:
    narrow = {"inversion": {"content_weight": {"exclusiveMinimum": 0}},
              "texture": {"style_weight": {"exclusiveMinimum": 0}}}.get(group, {})
    properties = {} if group == "transfer" else {"layers": {"description": "the layers, a run each, in the grid's "
                                                                           "order", "$ref": "#/$defs/layers"}}
    for name in SECTION_SETTINGS[group]:
        node = _setting(TransferSettings, name, **narrow.get(name, {}))
        if name == "steps" and group != "transfer":
            node = {"description": node["description"], **node["items"]}  # one step count per layer run
        properties[name] = node
    if group == "transfer":
        properties["runs"] = _transfer_runs()
    return _closed(properties, description)


def _diffusion_section() -> dict:
    guidance = {key: _setting(GuidanceSettings, setting) for key, setting in GUIDANCE_WINDOW.items()}
    run = _closed({
        "name": _name("the run's folder under the results' part2/generated/"),
        **{name: _setting(GuidanceSettings, name) for name in GENERATION_RUN_SETTINGS},
        "steps_factor": {"description": "this run's steps as a multiple of diffusion.steps (1.5 gives 150 of 100)",
                         "type": "number", "exclusiveMinimum": 0},
    }, required=["name", "prompt"])
    transfer = {
        "content": {"type": "string", "description": "name of the run whose image is the content"},
        "steps": _setting(TransferSettings, "steps"),
        "runs": _transfer_runs(),
    }
    properties = {
        **{name: _setting(ModelChoice, name) for name in DIFFUSION_MODEL},
        **{name: _setting(GuidanceSettings, name, **({"multipleOf": 8} if name == "size" else {}))
           for name in DIFFUSION_SETTINGS},
        "guidance": _closed(guidance, "which steps are guided: a window of the schedule (fractions) and every k-th "
                                      "step in it"),
        "runs": _runs(run, "the generations, each in its own folder"),
        "transfer": _closed(transfer, "Part 1 style transfer (with the transfer section's layers and content weight) "
                                      "on a generated image"),
        "comparison": {"description": "runs shown side by side with the transfers on generated content",
                       "type": "array", "items": {"type": "string"}, "uniqueItems": True},
    }
    return _closed(properties, "Part 2, sampling from a diffusion model steered by the gradient of a style loss")


def _part3_section() -> dict:
    loss = {name: _setting(TransferSettings, name, **({"exclusiveMinimum": 0} if name == "style_weight" else {}))
            for name in TRANSFER_RUN_SETTINGS}
    colour = {
        "modes": {"description": "colour preservation modes, side by side (none: the plain transfer)",
                  "type": "array", "items": _bare(schema_of(TransferSettings, "preserve_colors")), "minItems": 1,
                  "uniqueItems": True},
        "runs": _transfer_runs(),
    }
    scale_run = _closed({
        "name": _name("the run's name in file names and the report"),
        "scales": _setting(TransferSettings, "scales"),
        "scale_steps": _setting(TransferSettings, "scale_steps", uniqueItems=False),
        "steps": {"description": "steps at the last scale", "$ref": "#/$defs/steps"},
    }, required=["name", "scales", "steps"])
    scales = {**loss, "runs": _runs(scale_run, "coarse to fine against one scale at the same last size")}
    blend = {
        "styles": {"description": "the style images blended", "type": "array", "minItems": 2,
                   "items": {"type": "string", "minLength": 1}},
        **loss,
        "weights": _runs(_bare(schema_of(TransferSettings, "style_blend"))["anyOf"][1],
                         "blend weights, one list per run, one weight per style image"),
    }
    properties = {
        "steps": {"description": "steps of the colour and blend runs (each keeps its final image)",
                  "$ref": "#/$defs/steps"},
        "colour": _closed(colour, "colour preservation: each mode for each run"),
        "scales": _closed(scales, "coarse-to-fine optimisation against a single scale"),
        "blend": _closed(blend, "several style images, their statistics blended per layer"),
    }
    return _closed(properties, "Part 3, beyond the assignment: style transfers with the transfer section's layers, "
                               "content weight, init and seed")


def _sweeps_section() -> dict:
    values = {"description": "the setting's values", "type": "array", "minItems": 2, "maxItems": 8,
              "uniqueItems": True}
    setting = {"type": "string"}  # which settings a sweep takes, stylelab.spec.sweeps says (one line per mistake)
    sweep = _closed({
        "experiment": {"description": "the experiment run at every point", "enum": list(SWEEP_EXPERIMENTS)},
        "settings": {"description": "settings of every point, over the experiment's section (for generate: a run; "
                                    "inversion and texture: their layer)", "type": "object", "propertyNames": setting},
        "vary": {"description": "one or two settings, each with 2 to 8 values: a point per combination",
                 "type": "object", "propertyNames": setting, "minProperties": 1, "maxProperties": 2,
                 "additionalProperties": values},
    }, "one sweep, named by its key", required=["experiment", "vary"])
    return {"description": "sweeps: an experiment over the values of one or two settings, each with its grid, "
                           "its metrics plot and its report section (a word of letters, digits, _ and - names each)",
            "type": "object", "propertyNames": {"pattern": SWEEP_NAME}, "additionalProperties": sweep}


def config_schema() -> dict:
    """The JSON schema of the workflow's config. Every object is closed and every key required unless said (`bundle`
    and its keys are optional)."""
    jobs = {
        "threads": {"description": "threads of each experiment job", "type": "integer", "minimum": 1},
        "mem_mb": {"description": "memory of each experiment job in MB", "type": "integer", "minimum": 100},
        "max_pixels": {"description": "an input image above this many pixels is refused before it is decoded "
                                      "(stylelab --max-pixels)", "type": "integer", "minimum": 1},
        "runs_in_one_job": {"description": "run each experiment's runs in one job, one after another in one "
                                           "process (an inversion's or a texture's layers, the transfers, the "
                                           "generations, Part 3's runs, a sweep's points), and draw each part's "
                                           "figures in one job: for short runs, whose time is their start-up "
                                           "(false: a job per run and per figure)", "type": "boolean"},
    }
    properties = {
        "images": _closed({
            "content": {"type": "string", "minLength": 1,
                        "description": "content image (PNG or JPEG), relative to the working directory"},
            "style": {"type": "string", "minLength": 1, "description": "style image"},
        }),
        "results": {"description": "the folder every result, log and benchmark file goes under", "type": "string",
                    "minLength": 1},
        **{name: _setting(TransferSettings, name) for name in NETWORK_SETTINGS},
        "jobs": _closed(jobs, "what each compute job asks of the scheduler, and the limits it works within (does "
                              "not change results)"),
        "inversion": _part1_section("inversion", "feature inversion, one run per layer"),
        "texture": _part1_section("texture", "texture synthesis, one run per layer"),
        "transfer": _part1_section("transfer", "style transfer, one run per entry of runs, each saving an image "
                                               "at every listed step"),
        "diffusion": _diffusion_section(),
        "part3": _part3_section(),
        "sweeps": _sweeps_section(),
        "bundle": _closed({
            "name": _name("the zip's file name under the results folder (.zip added if it "
                          "lacks it; default: stylelab-<commit>.zip)"),
            "authors": {"description": "shown on the report's title page", "type": "string", "minLength": 1},
        }, "`make bundle`: the run as one zip archive (optional, as are both its keys)", required=[]),
    }
    layers = {"type": "array", "items": {"$ref": "#/$defs/layer"}, "minItems": 1, "uniqueItems": True}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "stylelab workflow configuration",
        "description": "Made by `stylelab config-schema` from stylelab.spec.settings and stylelab.spec.config; do "
                       "not edit.",
        **_closed(properties, required=[key for key in properties if key != "bundle"]),
        "$defs": {"layer": {"type": "string", "enum": LAYER_ENUM}, "layers": layers, **SHARED},
    }


def schema_yaml() -> str:
    import yaml

    header = ("# The configuration of the workflow (config.yaml, and any --configfile laid over it).\n"
              "# Written by `stylelab config-schema --write` from the settings' one definition "
              "(src/stylelab/spec/settings.py,\n# src/stylelab/spec/config.py); tests/test_settings.py checks it is "
              "up to date. Do not edit by hand.\n")
    return header + yaml.safe_dump(config_schema(), sort_keys=False, width=110, allow_unicode=True)


def config_message(error) -> str:
    """One line a user can act on, for a jsonschema ValidationError: which key, what it holds, what it may hold."""
    key = ""  # transfer.runs[2].style_weight
    for part in error.absolute_path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    where = f"in '{key}'" if key else "at the top level"
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        guesses = [difflib.get_close_matches(name, allowed, n=1) for name in unknown]
        guess = "".join(f" (did you mean '{match[0]}'?)" for match in guesses if match)
        return (f"config: unknown key {', '.join(map(repr, unknown))} {where}{guess}; "
                f"the keys there are: {', '.join(allowed)}.")
    if error.validator == "uniqueItems":
        return f"config: '{key}' lists the same entry twice ({error.instance}); make each one different."
    if error.validator in ("minItems", "maxItems", "minProperties", "maxProperties"):
        low, high = (error.schema.get(f"min{error.validator[3:]}"), error.schema.get(f"max{error.validator[3:]}"))
        what = ("value" if "Items" in error.validator else "setting") + ("s" if len(error.instance) != 1 else "")
        span = f"{low} to {high}" if high is not None else f"at least {low}"
        return f"config: '{key}' has {len(error.instance)} {what}; it takes {span}."
    if error.validator == "pattern" and isinstance(error.instance, str) and error.schema.get("pattern") == SWEEP_NAME:
        return (f"config: the name '{error.instance}' {where} is not a word: use letters, digits, _ and - (starting "
                "with a letter or digit).")
    if error.validator == "required":
        return f"config: {error.message} {where}."
    hint = ""
    if isinstance(error.instance, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?e[+-]?[0-9]+", error.instance):
        hint = f" (YAML reads {error.instance} as text: write {float(error.instance):.1e})"
    return f"config: '{key}' is {error.instance!r}, but it must be {describe(error.schema)}{hint}."


REFERENCE_FILE = "docs/configuration.md"
REFERENCE_INTRO = """\
# Configuration reference

The workflow reads `config.yaml` and lays any file given with `--configfile` over it, key by key. `config.yaml`
sets every key not marked optional, to the values the assignment ran with; an overlay such as
`workflow/configs/preview.yaml` sets only what differs. Before any job runs, Snakemake checks the merged
configuration against `workflow/schemas/config.schema.yaml`, and a mistake stops it with one line naming the key
([troubleshooting](troubleshooting.md)). In YAML write `1.0e+6`, not `1e6`, which YAML reads as text. In the keys
below, `[]` stands for each entry of a list and `<name>` for a name of your own.

Generated from the settings' one definition (`src/stylelab/spec/settings.py`, `src/stylelab/spec/config.py`) by
`stylelab config-schema --reference --write`; `tests/test_docs.py` checks that it is current. Do not edit by hand.
"""


def _resolved(node: dict, defs: dict) -> dict:
    """A schema node with every $ref in it (its own, its items', its options') replaced by the node it names."""
    if "$ref" in node:
        node = {**_resolved(defs[node["$ref"].rsplit("/", 1)[1]], defs), **{k: v for k, v in node.items()
                                                                          if k != "$ref"}}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node = {**node, key: _resolved(node[key], defs)}
    if "anyOf" in node:
        node = {**node, "anyOf": [_resolved(option, defs) for option in node["anyOf"]]}
    return node


def _takes(node: dict) -> str:
    """What a resolved node allows, in words, for the reference's tables."""
    if "anyOf" in node:
        options = [_takes(option) for option in node["anyOf"] if option.get("type") != "null"]
        return " or ".join(options) + (" or null" if len(options) < len(node["anyOf"]) else "")
    if node.get("type") in ("object", "boolean"):
        below = "properties" in node or "additionalProperties" in node
        return "true or false" if node["type"] == "boolean" else "a mapping" + (" (keys below)" if below else "")
    if node.get("type") != "array":
        exclusive = "exclusiveMinimum" in node and node.get("minimum", -FINITE) <= node["exclusiveMinimum"]
        return describe({k: v for k, v in node.items() if not (exclusive and k == "minimum")})
    items = node.get("items", {})
    if items.get("enum") == LAYER_ENUM:
        inner = "VGG-19 layer names (`stylelab layers`)"
    elif items.get("type") == "object":
        inner = "mappings (keys below)"
    elif items.get("type") == "array":
        inner = "lists of " + _takes(items).removeprefix("a list of ")
    elif "enum" in items:
        inner = "values from " + ", ".join(map(str, items["enum"]))
    else:
        inner = describe(items, plural=True) if items else "values"
    low, high = node.get("minItems", 0), node.get("maxItems")
    count = f", {low} to {high}" if high else (f", at least {low}" if low > 1 else "")
    return f"a list of {inner}{count}" + (", without repeats" if node.get("uniqueItems") else "")


def _rows(key: str, node: dict, defs: dict, required: bool = True):
    """(key, what it takes, what it is) of `node` and of every key inside it, depth first."""
    node = _resolved(node, defs)
    yield key, _takes(node), node.get("description", "") + ("" if required else " (optional)")
    inner, key = (node.get("items", {}), key + "[]") if node.get("type") == "array" else (node, key)
    for name, child in inner.get("properties", {}).items():
        yield from _rows(f"{key}.{name}", child, defs, name in inner.get("required", ()))
    if isinstance(inner.get("additionalProperties"), dict):
        named = "<name>" if "pattern" in inner.get("propertyNames", {}) else "<setting>"
        yield from _rows(f"{key}.{named}", inner["additionalProperties"], defs)


def _table(rows) -> list[str]:
    lines = ["| key | takes | what it is |", "|---|---|---|"]
    for key, takes, what in rows:
        # A | would end the cell, and <word> reads as an HTML tag.
        cells = (f"`{key}`", *(re.sub(r"<(?=[A-Za-z])", r"\\<", text.replace("|", "\\|")) for text in (takes, what)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def reference_markdown() -> str:
    """docs/configuration.md: every key of the workflow's config, what it takes and what it is, from the schema."""
    schema = config_schema()
    defs, required = schema["$defs"], schema["required"]
    sections = {k: v for k, v in schema["properties"].items() if v.get("type") == "object"}
    top = [row for k, v in schema["properties"].items() if k not in sections
           for row in _rows(k, v, defs, k in required)]
    lines = [REFERENCE_INTRO, "## Top-level keys", "", *_table(top)]
    for key, node in sections.items():
        about = node.get("description", "")
        about = about[:1].upper() + about[1:] + ("" if key in required or "optional" in about else " (optional)")
        lines += ["", f"## `{key}`", "", *([about + ".", ""] if about else []),
                  *_table(list(_rows(key, node, defs))[1:])]
    return "\n".join(lines) + "\n"
