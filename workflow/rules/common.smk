# Shared by the rules: check the config, then name every target from its experiment lists.
# Nothing here computes a result; the `stylelab` command does.

import difflib
import re
import shlex
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from stylelab.names import format_number  # file names and the report's labels write weights alike


SCHEMA = "../schemas/config.schema.yaml"


def _config_key(error):
    """`transfer.runs[2].style_weight` for where an error is in the config ('' at the top level)."""
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed(schema):
    """The values or range a schema node allows, in words."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    if "const" in schema:
        return repr(schema["const"])
    if "anyOf" in schema:
        return " or ".join(_allowed(option) for option in schema["anyOf"])
    words = [{"integer": "a whole number", "number": "a number", "string": "text", "array": "a list",
              "object": "a mapping", "null": "null"}.get(schema.get("type"), "a value")]
    if "minimum" in schema:
        words.append(f">= {schema['minimum']}")
    if "exclusiveMinimum" in schema:
        words.append(f"> {schema['exclusiveMinimum']}")
    if "minItems" in schema:
        words.append(f"with at least {schema['minItems']} item(s)")
    if schema.get("uniqueItems"):
        words.append("without repeats")
    return " ".join(words)


def _config_message(error):
    """One line a user can act on: which key, what it holds, what it may hold."""
    key = _config_key(error)
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
    if error.validator == "required":
        return f"config: {error.message} {where}."
    hint = ""
    if isinstance(error.instance, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?e[+-]?[0-9]+", error.instance):
        hint = f" (YAML reads {error.instance} as text: write {float(error.instance):.1e})"
    return f"config: '{key}' is {error.instance!r}, but it must be {_allowed(error.schema)}{hint}."


def check_config(config):
    """Validate the config against the schema before any job; a mistake is one clear message."""
    try:
        validate(config, SCHEMA, set_default=False)
    except WorkflowError as failure:
        # snakemake.utils.validate wraps jsonschema's error, which holds where and why.
        error = failure.__context__
        if not isinstance(error, jsonschema.ValidationError):
            raise
        raise WorkflowError(_config_message(error)) from None


check_config(config)


# Where things go.
PART1 = "results/part1"
FIGURES = "results/part1/figures"
REPORT_HTML = "results/report/report.html"
LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"

# The command every rule runs: the `stylelab` beside the Python running Snakemake, so the workflow works
# without an activated environment (`.venv/bin/snakemake ...`).
_script = Path(sys.executable).parent / "stylelab"
STYLELAB = shlex.quote(str(_script)) if _script.exists() else "stylelab"
# The input pixel limit goes with the command itself, not into any rule's params: it changes no result, so
# changing it must rerun nothing (like jobs.threads).
STYLELAB += f" --max-pixels {int(config['jobs']['max_pixels'])}"

# A CPU run needs no GPU slot, so a CPU machine runs as many jobs side by side as it has cores.
GPU_SLOTS = 0 if config["device"] == "cpu" else 1
JOB_THREADS = config["jobs"]["threads"]
JOB_MEM_MB = config["jobs"]["mem_mb"]


def transfer_run_id(run):
    return f"{run['style_loss']}_w{format_number(run['style_weight'])}"


TRANSFER_RUNS = {transfer_run_id(run): run for run in config["transfer"]["runs"]}
if len(TRANSFER_RUNS) != len(config["transfer"]["runs"]):
    raise WorkflowError("config: transfer.runs lists the same style loss and weight twice; "
                        f"runs: {', '.join(transfer_run_id(r) for r in config['transfer']['runs'])}.")
TRANSFER_STEPS = sorted(config["transfer"]["steps"])

# Experiments whose runs are one per layer.
LAYER_GROUPS = ("inversion", "texture")
GROUPS = LAYER_GROUPS + ("transfer",)


def alternatives(names):
    """A wildcard constraint that matches exactly these names."""
    return "|".join(re.escape(str(name)) for name in names)


def layer_record(group, layer):
    return f"{PART1}/{group}/{layer}.json"


def layer_image(group, layer):
    return f"{PART1}/{group}/{layer}.png"


def transfer_record(run_id):
    return f"{PART1}/transfer/{run_id}.json"


def transfer_image(run_id, step):
    return f"{PART1}/transfer/{run_id}_s{step}.png"


def group_records(group):
    if group == "transfer":
        return [transfer_record(run_id) for run_id in TRANSFER_RUNS]
    return [layer_record(group, layer) for layer in config[group]["layers"]]


def group_images(group):
    if group == "transfer":
        return [transfer_image(run_id, step) for run_id in TRANSFER_RUNS for step in TRANSFER_STEPS]
    return [layer_image(group, layer) for layer in config[group]["layers"]]


def part1_targets():
    return [path for group in GROUPS for path in group_images(group) + group_records(group)]


def network_options():
    """The options every run shares; a change to any of them reruns every run."""
    options = ["--size", config["size"], "--weights", config["weights"], "--device", config["device"],
               "--optimizer", config["optimizer"], "--bounds", config["bounds"]]
    if config["lr"] is not None:
        options += ["--lr", config["lr"]]
    return " ".join(shlex.quote(str(option)) for option in options)


# The command of both style-transfer rules (Part 1, and Part 1 on generated content): same params, same form.
TRANSFER_SHELL = (
    "{STYLELAB} transfer --content {input.content:q} --style {input.style:q}"
    " --style-loss {params.style_loss} --style-weight {params.style_weight}"
    " --content-weight {params.content_weight} --content-layers {params.content_layers}"
    " --style-layers {params.style_layers} --init {params.init} --steps {params.steps}"
    " --seed {params.seed} {params.network}"
    " --out {params.out_dir} --image-name '{wildcards.run}_s{{step}}.png'"
    " --record-name {wildcards.run}.json --quiet > {log:q} 2>&1"
)


FIGURE_FILES = ([f"{FIGURES}/{group}_grid.png" for group in GROUPS]
                + [f"{FIGURES}/{group}_curves.png" for group in GROUPS])


# Part 2.
PART2 = "results/part2"
PART2_FIGURES = f"{PART2}/figures"
DIFFUSION = config["diffusion"]
GENERATION_RUNS = {run["name"]: run for run in DIFFUSION["runs"]}
if len(GENERATION_RUNS) != len(DIFFUSION["runs"]):
    raise WorkflowError("config: diffusion.runs gives two runs the same name; names: "
                        f"{', '.join(run['name'] for run in DIFFUSION['runs'])}.")
for _name in [DIFFUSION["transfer"]["content"], *DIFFUSION["comparison"]]:
    if _name not in GENERATION_RUNS:
        raise WorkflowError(f"config: '{_name}' (diffusion.transfer.content or diffusion.comparison) is not the "
                            f"name of a diffusion run; the runs are: {', '.join(GENERATION_RUNS)}.")
PART2_TRANSFER_RUNS = {transfer_run_id(run): run for run in DIFFUSION["transfer"]["runs"]}
PART2_TRANSFER_STEPS = sorted(DIFFUSION["transfer"]["steps"])


def generation_record(name):
    return f"{PART2}/generated/{name}/record.json"


def generation_image(name):
    return f"{PART2}/generated/{name}/image.png"


def part2_transfer_record(run_id):
    return f"{PART2}/transfer/{run_id}.json"


def part2_transfer_images(run_id):
    return [f"{PART2}/transfer/{run_id}_s{step}.png" for step in PART2_TRANSFER_STEPS]


def part2_targets():
    files = [f(name) for name in GENERATION_RUNS for f in (generation_image, generation_record)]
    for run_id in PART2_TRANSFER_RUNS:
        files += part2_transfer_images(run_id) + [part2_transfer_record(run_id)]
    return files


def generation_steps(name):
    return max(1, round(DIFFUSION["steps"] * GENERATION_RUNS[name].get("steps_factor", 1)))


def generation_options(name):
    """Every setting of one generation run that changes its image."""
    run = GENERATION_RUNS[name]
    guidance = DIFFUSION["guidance"]
    options = ["--model", DIFFUSION["model"], "--fallback", DIFFUSION["fallback"],
               "--steps", generation_steps(name), "--seed", DIFFUSION["seed"],
               "--cfg-scale", DIFFUSION["cfg_scale"], "--precision", DIFFUSION["precision"],
               "--prompt", run["prompt"], "--style-loss", run.get("style_loss", "gram"),
               "--guidance-factor", run.get("guidance_factor", 0.0),
               "--guidance-start", guidance["start"], "--guidance-end", guidance["end"],
               "--guidance-every", guidance["every"], "--weights", config["weights"], "--device", config["device"]]
    if DIFFUSION["size"] is not None:
        options += ["--size", DIFFUSION["size"]]
    return " ".join(shlex.quote(str(option)) for option in options)


PART2_FIGURE_FILES = [f"{PART2_FIGURES}/{name}.png" for name in ("generation_grid", "guidance_curves", "comparison")]


def report_sections():
    """`--section GROUP FIGURE...` for each experiment group, in the order the report shows them."""
    part1 = [f"--section {group} {FIGURES}/{group}_grid.png {FIGURES}/{group}_curves.png" for group in GROUPS]
    return " ".join(part1 + ["--section generation " + " ".join(PART2_FIGURE_FILES)])
