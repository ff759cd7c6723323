"""The Snakemake workflow, through Snakemake itself, in a temporary copy of the project.

The default configuration's DAG (dry run), its agreement with the assignment and with the library's names,
and config mistakes stopping the run before any job; Snakemake's conventions (`snakemake --lint`, snakefmt,
one software environment); a tiny full run and a preview after it, each under its own results root (about
a minute and a half); then the preview configuration end to end (2 to 3 minutes, part of CI), and what
Snakemake reruns after a figure is deleted or a setting changed (from its own dry-run output).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from stylelab.report import contents
from stylelab.spec import sweeps
from stylelab.spec.config import layer_jobs
from stylelab.spec.layers import CANONICAL_NAMES, LAYER_NAMES
from stylelab.spec.settings import BOUNDS, DEVICES, OPTIMIZERS, STYLE_LOSSES, WEIGHTS_SOURCES, format_number

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PROJECT_FILES = ("Snakefile", "profiles", "config.yaml", "workflow", "data", "src")
PREVIEW = "workflow/configs/preview.yaml"
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
PREVIEW_ROOT = yaml.safe_load((ROOT / PREVIEW).read_text())["results"]  # where the preview writes everything

# The Part 1 runs of the assignment (PARAMETERS.md), and the jobs that turn them into figures and a report.
ASSIGNMENT_LAYERS = ["conv_1", "conv_5", "conv_10", "relu_1", "relu_5", "relu_10", "pool_2", "pool_8", "pool_16"]
# One job per figure declared in stylelab.report.contents (rule <figure>_figure).
FIGURE_JOBS = {f"{figure.name}_figure": 1 for figure in contents.FIGURES}
PART2_JOBS = {"models": 1, "generate": 6, "transfer_on_generated": 2,
              **{f"{figure.name}_figure": 1 for figure in contents.FIGURES if figure.part == "Part 2"}}


def layer_job_counts(config: dict) -> dict[str, int]:
    """The inversion and texture jobs of a config: one per layer, or (jobs.runs_in_one_job) one per experiment
    of several layers (rule <group>_layers)."""
    counts: dict[str, int] = {}
    for group in ("inversion", "texture"):
        for layers in layer_jobs(config, group).values():
            rule = group if len(layers) == 1 else f"{group}_layers"
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def sweep_job_counts(config: dict, experiment: str | None = None) -> dict[str, int]:
    """A job per sweep point that no other run makes (rule sweep_<sweep>_<point>), and two figures per sweep;
    with `experiment`, the points of that experiment's sweeps alone."""
    counts = {}
    for sweep in sweeps.plan(config).values():
        if experiment not in (None, sweep.experiment):
            continue
        for point in sweep.points:
            if point.same is None:
                counts["sweep_" + re.sub(r"\W", "_", f"{sweep.name}_{point.name}")] = 1
        if experiment is None:
            counts.update({f"sweep_{sweep.name}_{drawing}": 1 for drawing in ("grid", "metrics")})
    return counts


# Part 3: colour (3 modes x 2 runs), scales (2 runs), blend (4 weights), and a figure each.
PART3_JOBS = {"part3_transfer": 12}
DEFAULT_JOBS = {**PART2_JOBS, **PART3_JOBS, **layer_job_counts(CONFIG), **FIGURE_JOBS, **sweep_job_counts(CONFIG),
                "transfer": 4, "report": 1, "all": 1}


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The job-count table Snakemake prints ("Job stats:"), without its total; {} when nothing is to be done."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M))
    assert "total" in rows, table
    counts = {job: int(n) for job, n in rows.items() if job != "total"}
    assert sum(counts.values()) == int(rows["total"])
    return counts


def planned_outputs(output: str) -> set[str]:
    """Every output file of the jobs a dry run lists."""
    files = set()
    for line in re.findall(r"^\s+output: (.*)$", output, flags=re.M):
        files.update(f.strip() for f in line.split(","))
    return files


def command_specs(output: str, command: str) -> list[tuple[dict, str]]:
    """The settings each `stylelab COMMAND --spec JSON ...` line of a dry run hands its run, with the line; each
    line of a batch (`stylelab batch 'COMMAND --spec JSON ...' ...`) as its own."""
    found = []
    for line in output.splitlines():
        if not re.search(rf"[ ']{command} --spec ", line):
            continue
        words = shlex.split(line)
        runs = [shlex.split(word) for word in words if word.startswith(f"{command} --spec ")] or [words]
        found += [(json.loads(run[run.index("--spec") + 1]), line) for run in runs]
    return found


def write_overlay(workdir: Path, name: str, text: str) -> str:
    path = workdir / name
    path.write_text(text)
    return name


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"))


# ---------------------------------------------------------------------------------------------- fast


def test_schema_names_agree_with_the_library():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$defs"]["layer"]["enum"] == list(LAYER_NAMES) + list(CANONICAL_NAMES)
    assert schema["$defs"]["style_loss"]["enum"] == list(STYLE_LOSSES)
    assert schema["properties"]["weights"]["enum"] == list(WEIGHTS_SOURCES)
    assert schema["properties"]["device"]["enum"] == list(DEVICES)
    assert schema["properties"]["optimizer"]["enum"] == list(OPTIMIZERS)
    assert schema["properties"]["bounds"]["enum"] == list(BOUNDS)

    def closed(node, where="schema"):
        if isinstance(node, dict):
            # Closed, but for a map whose keys are names (sweeps by name, settings by name: the library checks them)
            if node.get("type") == "object" and "propertyNames" not in node:
                assert node.get("additionalProperties") is False, where
            for key, value in node.items():
                closed(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                closed(value, f"{where}[{i}]")

    closed(schema)


def test_default_dry_run_lists_exactly_the_part1_runs(project):
    run = snakemake(project, "-n", "--cores", "1", "--resources", "gpu=1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_counts(run.stdout) == DEFAULT_JOBS
    planned = planned_outputs(run.stdout)
    transfer_images = {f"results/part1/transfer/{run}_s{step}.png" for run in
                       ("gram_w1e6", "meanvar_w1", "meanvar_w10", "meanvar_w20") for step in (300, 1000)}
    assert transfer_images <= planned
    assert len([f for f in planned if f.startswith("results/part1/transfer/") and f.endswith(".png")]) == 8
    for group in ("inversion", "texture"):
        assert {f"results/part1/{group}/{layer}.{ext}" for layer in ASSIGNMENT_LAYERS for ext in ("png", "json")} \
            <= planned
    # Experiment jobs hold the GPU (one at a time); figures and the report do not.
    assert re.search(r"rule texture:(?:\n .*)*\n\s+resources: .*gpu=1", run.stdout)
    assert not re.search(r"rule report:(?:\n .*)*\n\s+resources: .*gpu=", run.stdout)


def test_default_dry_run_lists_exactly_the_part2_runs(project):
    run = snakemake(project, "-n", "--cores", "1", "--resources", "gpu=1", "--", "results/part2/figures/comparison.png",
                    "results/part2/figures/generation_grid.png", "results/part2/figures/guidance_curves.png")
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_counts(run.stdout) == PART2_JOBS
    # (prompt, style loss, guidance factor, steps) of each run of the assignment, one seed for all
    expected = {("a cat", "gram", 0.0, 100), ("a cat", "gram", 0.6, 100), ("a cat", "gram", 0.85, 100),
                ("a cat", "gram", 0.6, 150), ("a cat", "meanvar", 0.6, 100),
                ("A picture of a cat with the style of Picasso", "gram", 0.0, 100)}
    found = set()
    for spec, _ in command_specs(run.stdout, "generate"):
        # a setting the spec leaves out takes the command's default (gram, unguided)
        found.add((spec["prompt"], spec.get("style_loss", "gram"), spec.get("guidance_factor", 0.0), spec["steps"]))
        assert spec["seed"] == 0 and spec["model"] == "CompVis/stable-diffusion-v1-4"
    assert found == expected
    transfers = [spec for spec, line in command_specs(run.stdout, "transfer")
                 if "--content results/part2/generated/unguided" in line]
    assert len(transfers) == 2 and all(spec["steps"] == [300, 1000] for spec in transfers)


def test_models_is_planned_before_every_generate_job(project):
    """(That it runs where Snakemake runs, not as a cluster job: tests/test_slurm.py.)"""
    run = snakemake(project, "-n", "--cores", "1", "--", "report")
    assert run.returncode == 0, run.stderr[-3000:]
    words = shlex.split(re.search(r"^.* models fetch --spec .*$", run.stdout, flags=re.M).group(0))
    spec = json.loads(words[words.index("--spec") + 1])
    assert spec == {"model": CONFIG["diffusion"]["model"], "revision": CONFIG["diffusion"]["revision"],
                    "precision": CONFIG["diffusion"]["precision"]}
    assert words[words.index("--fallback") + 1] == "embedded"
    assert re.fullmatch(r"[0-9a-f]{40}", spec["revision"])  # the default run is pinned
    dag = snakemake(project, "--dag", "--cores", "1", "--", "report")
    assert dag.returncode == 0, dag.stderr[-3000:]
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)', dag.stdout, flags=re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dag.stdout, flags=re.M)
    generates = {n for n, rule in names.items() if rule == "generate"}
    models = [n for n, rule in names.items() if rule == "models"]
    assert len(generates) == 6 and len(models) == 1
    # models feeds every generation, the generate sweeps' points too, and nothing else
    sweep_points = {n for n, rule in names.items() if rule in sweep_job_counts(CONFIG, "generate")}
    assert len(sweep_points) == 3
    assert {b for a, b in edges if a == models[0]} == generates | sweep_points


def test_a_changed_revision_or_precision_reruns_the_fetch_and_what_follows(tiny_run):
    workdir, overlay, _ = tiny_run
    changed = workdir.parent / "fetch.yaml"
    for text in ("diffusion: {revision: main}", "diffusion: {precision: bf16}"):
        changed.write_text(text + "\n")
        run = snakemake(workdir, "-n", "--cores", "1", "--configfile", str(overlay), str(changed), "--", "report")
        assert run.returncode == 0, run.stderr[-3000:]
        counts = job_counts(run.stdout)
        assert counts.get("models") == 1 and counts.get("generate") == 2 and "inversion" not in counts, counts


def test_under_the_gpu_profile_a_model_that_cannot_be_had_stops_the_run_before_any_gpu_job(tmp_path):
    workdir = copy_project(tmp_path / "project")
    overlay = tmp_path / "missing-model.yaml"
    overlay.write_text(_tiny(steps=2).replace("model: embedded-sd", "model: fake-org/not-in-the-cache\n  revision: main"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run([SNAKEMAKE, "--profile", "workflow/profiles/gpu", "--configfile", str(overlay), "--",
                          "report"], cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode != 0
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("stylelab: error:")]
    assert lines and len(set(lines)) == 1, run.stdout + run.stderr
    assert "fake-org/not-in-the-cache" in lines[0] and str(tmp_path / "hf" / "hub") in lines[0]
    assert "make models" in lines[0]
    results = workdir / CONFIG["results"]
    started = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    # No experiment job began, not even its log; the inputs figure (no GPU, it needs the two images only)
    # may run beside the fetch.
    inputs_figure = {"part1/figures/inputs.png", "logs/figures/inputs.log", "benchmarks/figures/inputs.tsv"}
    assert "logs/part2/model.log" in started and set(started) - inputs_figure == {"logs/part2/model.log"}, started


def test_plain_snakemake_report_uses_the_default_profile(project):
    run = snakemake(project, "-n", "report")  # no --cores: the profile gives them
    assert run.returncode == 0, run.stderr[-3000:]
    assert "profiles/default" in run.stderr + run.stdout  # found beside the root Snakefile (a link)
    expected = {job: n for job, n in DEFAULT_JOBS.items() if job != "all"}
    assert job_counts(run.stdout) == expected


def test_preview_is_the_same_experiments_smaller(project):
    run = snakemake(project, "-n", "--cores", "2", "--configfile", PREVIEW, "--", "report")
    assert run.returncode == 0, run.stderr[-3000:]
    preview = _preview_config()
    # The preview's short runs share a job, an experiment's runs in one (their time is start-up; the jobs:
    # tests/test_smoke.py), every layer of an inversion or texture in one.
    assert [list(layer_jobs(preview, group).values()) for group in ("inversion", "texture")] == \
        [[ASSIGNMENT_LAYERS], [ASSIGNMENT_LAYERS]]
    specs = [spec for command in ("invert", "texture", "transfer") for spec, _ in command_specs(run.stdout, command)]
    assert len(specs) == 1 + 1 + 4 + 2 + PART3_JOBS["part3_transfer"] + 1  # + the MeanVar weight sweep's point
    assert all(spec["size"] == 64 and spec["device"] == "cpu" and 1000 not in spec["steps"] for spec in specs)
    # On the CPU an experiment needs no GPU slot, so two run side by side on two cores.
    assert not re.search(r"gpu=1", run.stdout)


@pytest.mark.parametrize("overlay, message", [
    ("inversoin:\n  steps: 3\n",
     "config: unknown key 'inversoin' at the top level (did you mean 'inversion'?); the keys there are: "
     "images, results, weights, device, precision, size, optimizer, lr, bounds, jobs, inversion, texture, transfer, "
     "diffusion, part3, sweeps, bundle."),
    ("texture:\n  layers: [conv_1, conv_99]\n",
     "config: 'texture.layers[1]' is 'conv_99', but it must be one of conv_1, relu_1, conv_2,"),
    ("transfer:\n  steps: [300, -1000]\n",
     "config: 'transfer.steps[1]' is -1000, but it must be a whole number >= 1."),
    ("inversion:\n  steps: 0\n",
     "config: 'inversion.steps' is 0, but it must be a whole number >= 1."),
    ("transfer:\n  runs: [{style_loss: meanvar, style_weight: 10}, {style_los: gram, style_weight: 1}]\n",
     "config: unknown key 'style_los' in 'transfer.runs[1]' (did you mean 'style_loss'?)"),
    ("texture:\n  style_weight: 1e6\n",
     "config: 'texture.style_weight' is '1e6', but it must be a finite number >= 0 (YAML reads 1e6 as text: write"),
    ("size: huge\n", "config: 'size' is 'huge', but it must be 'auto' or a whole number >= 8."),
    ("weights: imagenet\n", "config: 'weights' is 'imagenet', but it must be one of caffe, torchvision, random."),
    ("images:\n  content: nope.png\n",
     "config: images.content: nope.png does not exist: fix the path (it is relative to the folder the workflow runs "
     "in) or put the image there."),
    ("part3:\n  blend:\n    styles: [data/style/starry_night.jpg, gone/missing.jpg]\n",
     "config: part3.blend.styles[1]: gone/missing.jpg does not exist"),
    ("images:\n  style: config.yaml\n", "config: images.style: config.yaml is not an image file: name a PNG or JPEG"),
    # Sweeps: each kind of mistake the one line that names the sweep and the key.
    ("sweeps:\n  s: {experiment: style, vary: {style_weight: [1, 10]}}\n",
     "config: 'sweeps.s.experiment' is 'style', but it must be one of inversion, texture, transfer, generate."),
    ("sweeps:\n  s: {experiment: transfer, vary: {stlye_weight: [1, 10]}}\n",
     "config: sweeps.s.vary.stlye_weight: 'stlye_weight' is no setting of a transfer run (did you mean "
     "'style_weight'?)"),
    ("sweeps:\n  s: {experiment: transfer, vary: {threads: [1, 2]}}\n",
     "config: sweeps.s.vary.threads: 'threads' decides no result (a path, or where and how the job runs)"),
    ("sweeps:\n  s: {experiment: generate, vary: {guidance_factor: [0.5, -1]}}\n",
     "config: sweeps.s.vary.guidance_factor: guidance factor must be a finite number >= 0, got -1."),
    ("sweeps:\n  s: {experiment: transfer, vary: {style_weight: [10]}}\n",
     "config: 'sweeps.s.vary.style_weight' has 1 value; it takes 2 to 8."),
    ("sweeps:\n  s: {experiment: transfer, vary: {seed: [1, 2], steps: [3, 4], init: [noise, content]}}\n",
     "config: 'sweeps.s.vary' has 3 settings; it takes 1 to 2."),
    ("sweeps:\n  s:\n    experiment: transfer\n    vary: {seed: [1, 2]}\n  s:\n    experiment: texture\n"
     "    vary: {seed: [1, 2]}\n",
     "config: mistake.yaml line 5: 's' is given twice in sweeps; give each a name of its own."),
    ("sweeps:\n  my sweep: {experiment: transfer, vary: {seed: [1, 2]}}\n",
     "config: the name 'my sweep' in 'sweeps' is not a word: use letters, digits, _ and -"),
], ids=["misspelt-key", "unknown-layer", "negative-steps", "zero-steps", "nested-key", "yaml-1e6", "size",
        "weights", "missing-content", "missing-blend-style", "not-an-image", "sweep-experiment", "sweep-setting",
        "sweep-not-sweepable", "sweep-value", "sweep-one-value", "sweep-three-axes", "sweep-twice", "sweep-name"])
def test_config_mistakes_stop_before_any_job_with_one_message(project, overlay, message):
    name = write_overlay(project, "mistake.yaml", overlay)
    run = snakemake(project, "-n", "--cores", "1", "--configfile", name, "--", "report")
    output = run.stdout + run.stderr
    assert run.returncode == 1
    assert message in output
    assert output.count("config: ") == 1 and "Traceback" not in output
    assert "Job stats" not in output and "rule inversion" not in output and "Building DAG" not in output
    assert "MissingInputException" not in output and not (project / "results").exists()
    if "one of conv_1" in message:
        assert output.rstrip().count("pool5") >= 1  # the whole list of valid names, canonical ones included


SWEEP_OVERLAY = """
sweeps:
  weights:                       # meanvar at 10 is transfer.runs' meanvar_w10: made once
    experiment: transfer
    settings: {style_loss: meanvar}
    vary: {style_weight: [10, 40]}
  texture_seeds:                 # two axes: a job per combination
    experiment: texture
    settings: {steps: 50}
    vary: {layer: [conv_1, pool5], seed: [0, 1]}
"""


def test_a_sweep_added_by_a_config_overlay_alone_has_its_jobs_figures_and_report_section(project):
    name = write_overlay(project, "sweeps.yaml", SWEEP_OVERLAY)
    run = snakemake(project, "-n", "-p", "--cores", "1", "--configfile", name, "--", "report")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    own = {"sweep_weights_style_weight_40", "sweep_texture_seeds_layer_conv_1_seed_0",
           "sweep_texture_seeds_layer_conv_1_seed_1", "sweep_texture_seeds_layer_pool_16_seed_0",
           "sweep_texture_seeds_layer_pool_16_seed_1"}
    figures = {f"sweep_{sweep}_{drawing}" for sweep in ("weights", "texture_seeds") for drawing in ("grid", "metrics")}
    assert {job for job in counts if job.startswith(("sweep_weights", "sweep_texture"))} == own | figures
    # The shared point is the transfer run's files: no job of its own, read by the sweep's figures.
    assert "sweep_weights_style_weight_10" not in counts
    grid = re.search(r"rule sweep_weights_grid:\n\s+input: (.*)", run.stdout).group(1)
    assert "results/part1/transfer/meanvar_w10.json" in grid and "results/sweeps/weights/style_weight=40.json" in grid
    specs = [spec for spec, line in command_specs(run.stdout, "texture") if "results/sweeps/texture_seeds" in line]
    assert sorted((spec["seed"], spec["steps"]) for spec in specs) == [(0, [50]), (0, [50]), (1, [50]), (1, [50])]
    # The report's manifest has a section for each sweep, after Part 3's, with both figures.
    manifest = json.loads(shlex.split(next(line for line in run.stdout.splitlines() if " report --manifest " in line))
                          [shlex.split(next(line for line in run.stdout.splitlines()
                                            if " report --manifest " in line)).index("--manifest") + 1])
    assert [sweep["name"] for sweep in manifest["sweeps"]] == ["guidance_strength", "texture_seeds", "weights"]
    texture = manifest["sweeps"][1]
    assert texture["vary"] == {"layer": ["conv_1", "pool_16"], "seed": [0, 1]}
    assert texture["figures"] == ["results/sweeps/figures/texture_seeds_grid.png",
                                  "results/sweeps/figures/texture_seeds_metrics.png"]
    assert manifest["sweeps"][2]["shared"] == ["style_weight=10"]


# ------------------------------------------------------------------------ Snakemake's conventions


def test_snakemake_lint_finds_nothing(project):
    run = snakemake(project, "--lint")
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "Lints for" not in output, output[-5000:]


def test_snakefmt_leaves_the_workflow_as_it_is():
    snakefmt = Path(sys.executable).parent / "snakefmt"
    assert snakefmt.exists(), "snakefmt is missing: `make env` installs it (pyproject.toml's test extra)"
    run = subprocess.run([str(snakefmt), "--check", "Snakefile", "workflow/rules"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


def test_every_rule_runs_in_the_one_software_environment():
    common = (ROOT / "workflow/rules/common.smk").read_text()
    software = re.search(r'^SOFTWARE = "([^"]+)"$', common, flags=re.M).group(1)
    assert (ROOT / "workflow/rules" / software).resolve() == ROOT / "workflow/envs/stylelab.yaml"
    for path in sorted((ROOT / "workflow/rules").glob("*.smk")):
        text = path.read_text()
        rules = re.findall(r"^rule (\w+):", text, flags=re.M)
        assert re.findall(r"^    conda:\n        (\S+)$", text, flags=re.M) == ["SOFTWARE"] * len(rules), path.name


# ---------------------------------------------- results roots: a preview never touches a full run's files


def test_the_makefile_and_the_preview_use_the_configs_results_root():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^RESULTS := (\S+)$", makefile, flags=re.M).group(1) == CONFIG["results"]
    assert "rm -rf $(RESULTS) " in makefile  # make clean: the preview's files too, they are under it
    assert Path(PREVIEW_ROOT).parent == Path(CONFIG["results"])
    manifest = re.search(r"^MODEL_MANIFEST := (\S+)$", makefile, flags=re.M).group(1)
    assert manifest == "$(RESULTS)/part2/model/manifest.json"  # where the models rule writes it (common.smk)
    assert 'MODEL_MANIFEST = f"{PART2}/model/manifest.json"' in (ROOT / "workflow/rules/common.smk").read_text()


def _tiny(steps: int) -> str:
    """An overlay that makes every kind of job quick: few layers and runs, `steps` steps, 32 pixels."""
    return f"""\
device: cpu
size: 32
weights: random
jobs: {{threads: 1, mem_mb: 2000, max_pixels: 40000000}}
inversion: {{layers: [conv_1, relu_1], steps: {steps}}}
texture: {{layers: [conv_1], steps: {steps}}}
transfer: {{steps: [1, {steps}], runs: [{{style_loss: gram, style_weight: 1.0e+6}}]}}
diffusion:
  model: embedded-sd
  steps: {steps}
  runs:
    - {{name: unguided, prompt: a cat}}
    - {{name: gram_s0.6, prompt: a cat, style_loss: gram, guidance_factor: 0.6}}
  transfer: {{content: unguided, steps: [1, {steps}], runs: [{{style_loss: gram, style_weight: 1.0e+6}}]}}
  comparison: [unguided, gram_s0.6]
part3:
  steps: {steps}
  colour: {{modes: [none, luminance], runs: [{{style_loss: gram, style_weight: 1.0e+6}}]}}
  scales:
    runs:
      - {{name: single_scale, scales: [32], steps: {steps}}}
      - {{name: coarse_to_fine, scales: [16, 32], scale_steps: [{steps}], steps: {steps}}}
  blend: {{weights: [[1, 0], [0.5, 0.5]]}}
"""


def _files(workdir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a project copy (bytes and mtime), but Snakemake's own records in .snakemake/."""
    return {str(path.relative_to(workdir)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in workdir.rglob("*") if path.is_file() and path.relative_to(workdir).parts[0] != ".snakemake"}


def test_runs_in_one_job_and_a_deleted_image_is_rebuilt_by_naming_it(tmp_path):
    """jobs.runs_in_one_job: an experiment's layers are one job whose outputs are each layer's image and
    record, each the image its own job makes. Delete one image and name it: the experiment's job reruns."""
    workdir = copy_project(tmp_path / "project")
    overlay = workdir.parent / "together.yaml"
    tiny = _tiny(steps=2).replace("[conv_1, relu_1]", "[conv_1, relu_1, pool_2]")
    overlay.write_text(tiny.replace("max_pixels: 40000000}", "max_pixels: 40000000, runs_in_one_job: true}"))
    images = [f"results/part1/inversion/{layer}.png" for layer in ("conv_1", "relu_1", "pool_2")]
    dry = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(overlay), "--", *images)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert job_counts(dry.stdout) == {"inversion_layers": 1}
    assert "--layer conv_1 relu_1 pool_2 " in dry.stdout
    run = snakemake(workdir, "--cores", "2", "--configfile", str(overlay), "--", "results/part1/inversion/relu_1.png")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    record = json.loads((workdir / "results/part1/inversion/relu_1.json").read_text())
    assert record["settings"]["content_layers"] == ["relu_1"]
    together = {image: (workdir / image).read_bytes() for image in images}
    (workdir / images[0]).unlink()
    again = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(overlay), "--", images[0])
    assert job_counts(again.stdout) == {"inversion_layers": 1}, again.stdout[-3000:]
    nothing = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(overlay), "--", images[1])
    assert job_counts(nothing.stdout) == {}
    # The same runs as a job each: byte for byte the same images.
    overlay.write_text(tiny)
    shutil.rmtree(workdir / "results")
    alone = snakemake(workdir, "--cores", "2", "--configfile", str(overlay), "--", *images)
    assert alone.returncode == 0 and job_counts(alone.stdout + alone.stderr) == {"inversion": 3}, alone.stderr[-3000:]
    assert {image: (workdir / image).read_bytes() for image in images} == together


def test_a_batch_parses_every_line_before_the_first_runs(tmp_path, capsys):
    """`stylelab batch`: a mistake in any line stops it before anything is written; a batch in a batch is refused."""
    from stylelab.cli import main

    images = f"--content {CONFIG['images']['content']} --style {CONFIG['images']['style']}"
    first, second = (f"figure inputs {images} --out {tmp_path / name}" for name in ("a.png", "b.png"))
    with pytest.raises(SystemExit) as stop:
        main(["batch", first, "transfer --no-such-option"])
    assert stop.value.code == 2 and "required: --out (see `stylelab transfer --help`)" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()
    assert main(["batch", first, "batch layers"]) == 2
    assert "a line of a batch cannot be a batch itself" in capsys.readouterr().err
    assert main(["batch", first, second]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_runs_in_one_job_makes_an_experiment_one_process_with_the_images_its_jobs_make(tmp_path):
    """jobs.runs_in_one_job: the transfers, the generations (the config's generate sweep's points with them), Part 2's
    transfers, Part 3 and each part's figures are a job each (`stylelab batch`), with byte for byte the images a job
    per run makes; deleting one run's image and naming it reruns its experiment's job only."""
    workdir = copy_project(tmp_path / "project")
    overlay = workdir.parent / "together.yaml"
    tiny = _tiny(steps=2).replace("runs: [{style_loss: gram, style_weight: 1.0e+6}]}\ndiffusion",
                                  "runs: [{style_loss: gram, style_weight: 1.0e+6}, {style_loss: meanvar, "
                                  "style_weight: 10}]}\ndiffusion")
    overlay.write_text(tiny.replace("max_pixels: 40000000}", "max_pixels: 40000000, runs_in_one_job: true}"))
    dry = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(overlay), "--", "report")
    assert dry.returncode == 0, dry.stderr[-3000:]
    batches = {"transfer_runs", "generate_runs", "transfer_on_generated_runs", "part3_transfer_runs"}
    figures = {"part1_figures", "part2_figures", "part3_figures", "sweeps_figures"}
    assert job_counts(dry.stdout) == dict.fromkeys(batches | figures | {"inversion_layers", "texture", "models",
                                                                         "report"}, 1)
    images = ["results/part1/transfer/gram_w1e6_s2.png", "results/part1/transfer/meanvar_w10_s2.png",
              "results/part2/generated/unguided/image.png", "results/part2/generated/gram_s0.6/image.png",
              "results/sweeps/guidance_strength/guidance_factor=2/image.png"]
    run = snakemake(workdir, "--cores", "2", "--configfile", str(overlay), "--", *images)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert job_counts(run.stdout + run.stderr) == {"transfer_runs": 1, "generate_runs": 1, "models": 1}
    log = (workdir / "results/logs/part2/generated/runs.log").read_text()
    assert "batch 1/" in log and "stylelab --max-pixels 40000000 generate --spec" in log
    record = json.loads((workdir / "results/part1/transfer/meanvar_w10.json").read_text())
    assert record["command"][:4] == ["stylelab", "--max-pixels", "40000000", "transfer"]  # as its own job's
    together = {image: (workdir / image).read_bytes() for image in images}
    (workdir / images[1]).unlink()
    again = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(overlay), "--", *images)
    assert job_counts(again.stdout) == {"transfer_runs": 1}, again.stdout[-3000:]
    # The same runs as a job each: byte for byte the same images.
    overlay.write_text(tiny)
    shutil.rmtree(workdir / "results")
    alone = snakemake(workdir, "--cores", "2", "--configfile", str(overlay), "--", *images)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert job_counts(alone.stdout + alone.stderr) == {"transfer": 2, "generate": 2, "models": 1,
                                                       "sweep_guidance_strength_guidance_factor_2": 1}
    assert {image: (workdir / image).read_bytes() for image in images} == together


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A complete run of the default configuration, made tiny, under the default root (about a minute).
    The overlays lie beside the project copy, so that every file in it is the workflow's or its output."""
    workdir = copy_project(tmp_path_factory.mktemp("tiny") / "project")
    overlay = workdir.parent / "tiny.yaml"
    overlay.write_text(f"results: {CONFIG['results']}\n" + _tiny(steps=2))
    run = snakemake(workdir, "--cores", "2", "--configfile", str(overlay), timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert job_counts(run.stdout + run.stderr)["report"] == 1
    return workdir, overlay, _files(workdir)


def test_the_jobs_settings_and_the_pixel_limit_rerun_nothing(tiny_run):
    """Neither is a param of any job: the pixel limit goes with the command, which Snakemake does not compare."""
    workdir, overlay, _ = tiny_run
    limits = workdir.parent / "limits.yaml"
    limits.write_text("jobs: {threads: 2, mem_mb: 4000, max_pixels: 1000000}\n")
    run = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(overlay), str(limits))
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_counts(run.stdout) == {}


def test_the_preview_leaves_every_file_of_a_full_run_as_it_was(tiny_run):
    workdir, _, before = tiny_run
    assert f"{CONFIG['results']}/part1/inversion/conv_1.json" in before
    # The preview, as small, with other settings (so that a run writing to the same place would rerun):
    # one Part 1 run and one Part 2 transfer on a generated image (with its generation), nothing else.
    small = workdir.parent / "small-preview.yaml"
    small.write_text(_tiny(steps=3).replace("[conv_1, relu_1]", "[conv_1]"))
    run = snakemake(workdir, "--cores", "2", "--configfile", PREVIEW, str(small), "--until", "inversion",
                    "transfer_on_generated_runs", timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert job_counts(run.stdout + run.stderr) == {"inversion": 1, "models": 1, "generate_runs": 1,
                                                   "transfer_on_generated_runs": 1}

    after = _files(workdir)
    changed = sorted(name for name, file in before.items() if after.get(name) != file)
    assert not changed, f"the preview changed or removed files of the full run: {changed}"
    added = sorted(set(after) - set(before))
    assert f"{PREVIEW_ROOT}/part1/inversion/conv_1.json" in added
    assert f"{PREVIEW_ROOT}/part2/transfer/gram_w1e6.json" in added
    assert all(Path(name).is_relative_to(PREVIEW_ROOT) for name in added), added


def test_deleting_a_figure_of_a_full_run_rebuilds_only_that_figure(tiny_run):
    """A job per figure (jobs.runs_in_one_job: false, as config.yaml has it): a deleted figure, asked for, is drawn
    again by its own job, the same bytes; then the report, and nothing else. (After the test above, which compares
    every file with the run's.)"""
    workdir, overlay, _ = tiny_run
    figure = f"{CONFIG['results']}/part1/figures/texture_grid.png"
    before = (workdir / figure).read_bytes()
    (workdir / figure).unlink()
    options = ("--cores", "2", "--configfile", str(overlay))
    run = snakemake(workdir, "-n", *options, "--", figure)
    assert job_counts(run.stdout) == {"texture_grid_figure": 1} and planned_outputs(run.stdout) == {figure}
    run = snakemake(workdir, "-n", *options, "--", "all")
    assert job_counts(run.stdout) == {"texture_grid_figure": 1, "report": 1, "all": 1}
    run = snakemake(workdir, *options, "--", figure)
    assert run.returncode == 0 and job_counts(run.stdout + run.stderr) == {"texture_grid_figure": 1}, run.stderr
    assert (workdir / figure).read_bytes() == before
    run = snakemake(workdir, "-n", *options, "--", "all")
    assert job_counts(run.stdout) == {"report": 1, "all": 1}
    assert f"{CONFIG['results']}/benchmarks/figures/texture_grid.tsv" in run.stdout


# ------------------------------------------------------------- end to end (about 2 to 3 minutes, in CI)


@pytest.fixture(scope="module")
def preview(tmp_path_factory) -> Path:
    """One complete preview run, shared by the tests below (the ones that change files put them back)."""
    workdir = copy_project(tmp_path_factory.mktemp("preview"))
    start = time.time()
    run = snakemake(workdir, "--cores", "2", "--configfile", PREVIEW, "--", "report", timeout=1200)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    print(f"\npreview run: {time.time() - start:.0f} s")
    # Everything went to the copy; the repository's own results/ was not touched.
    assert (workdir / f"{PREVIEW_ROOT}/report/report.html").is_file()
    assert not any(p.stat().st_mtime >= start for p in (ROOT / "results").rglob("*"))
    return workdir


def _preview_config() -> dict:
    preview = yaml.safe_load((ROOT / PREVIEW).read_text())
    merged = json.loads(json.dumps(CONFIG))
    for key, value in preview.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
    return merged


def _records() -> list[str]:
    config = _preview_config()
    runs = [f"{group}/{layer}" for group in ("inversion", "texture") for layer in config[group]["layers"]]
    runs += [f"transfer/{r['style_loss']}_w{format_number(r['style_weight'])}" for r in config["transfer"]["runs"]]
    return runs


def _dry(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    run = snakemake(workdir, "-n", "--cores", "2", "--configfile", PREVIEW, *args)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return run


def test_preview_makes_every_target(preview):
    config = _preview_config()
    for name in _records():
        record = json.loads((preview / f"{PREVIEW_ROOT}/part1/{name}.json").read_text())
        group = name.split("/")[0]
        steps = config[group]["steps"] if group == "transfer" else [config[group]["steps"]]
        assert record["settings"]["steps"] == steps and min(record["image_size"]) == config["size"]
        assert record["device"] == "cpu" and record["weights"] == config["weights"]
        for step in steps:
            image = preview / f"{PREVIEW_ROOT}/part1/{group}" / record["images"][str(step)]["file"]
            assert image.is_file() and image.stat().st_size > 0
        job = "transfer/runs"  # the transfers' one job (jobs.runs_in_one_job)
        if group != "transfer":  # a job of several layers has its log and benchmark named by layer_jobs
            job = group + "/" + next(n for n, layers in layer_jobs(config, group).items() if name.split("/")[1] in layers)
        assert (preview / f"{PREVIEW_ROOT}/logs/part1/{job}.log").is_file()
        assert (preview / f"{PREVIEW_ROOT}/benchmarks/part1/{job}.tsv").is_file()
    for group in ("inversion", "texture"):
        for layer in config[group]["layers"]:
            assert (preview / f"{PREVIEW_ROOT}/part1/{group}/{layer}.png").is_file()
    for figure in ("inversion_grid", "texture_grid", "transfer_grid",
                   "inversion_curves", "texture_curves", "transfer_curves"):
        assert (preview / f"{PREVIEW_ROOT}/part1/figures/{figure}.png").stat().st_size > 10_000
    html = (preview / f"{PREVIEW_ROOT}/report/report.html").read_text()
    assert len(re.findall(r'<img src="data:image/(?:png|jpeg);base64,', html)) == N_FIGURES
    assert html.count("<section id=") == 9 + len(config["sweeps"])  # 8, a sweep's each, and the appendix
    assert "Stand-in model" in html  # the preview's diffusion model is the embedded one
    # Up to date afterwards: nothing reruns for no reason.
    assert job_counts(_dry(preview, "--", "report").stdout) == {}


def test_preview_report_shows_its_sweeps_after_part3_and_makes_shared_points_once(preview):
    """The preview's sweeps (its MeanVar weight sweep and config.yaml's guidance strength): each point's record,
    the two figures, a report section after Part 3 with findings; points equal to transfer runs or generations
    come from those runs."""
    root = preview / PREVIEW_ROOT
    html = (root / "report/report.html").read_text()
    names = sorted(_preview_config()["sweeps"])
    assert names == ["guidance_strength", "meanvar_weight"]
    for name in names:
        for drawing in ("grid", "metrics"):
            assert (root / f"sweeps/figures/{name}_{drawing}.png").stat().st_size > 10_000
        assert html.index(f'<section id="sweep-{name}">') > html.index('<section id="blend">')
    assert sorted(p.name for p in (root / "sweeps/meanvar_weight").iterdir()) == [
        "style_weight=100.json", "style_weight=100_s10.png", "style_weight=100_s30.png"]
    assert sorted(p.name for p in (root / "sweeps/guidance_strength").iterdir()) == [
        "guidance_factor=0.3", "guidance_factor=1.2", "guidance_factor=2"]
    text = html.split('<section id="sweep-meanvar_weight">', 1)[1].split("</section>", 1)[0]
    assert "style_weight from 1 to 100: the MeanVar distance was lowered by" in text
    assert text.count("<tr><td>style_weight = ") == 6  # metrics and runs, a row per point each


def test_every_figure_of_the_preview_says_how_it_was_made(preview, tmp_path):
    """Under each figure, the records it was drawn from with the command that made each (its spec in it), their
    and their inputs' SHA-256, the commit, device and precision; the PDF's appendix has a table per figure."""
    import hashlib

    root = preview / PREVIEW_ROOT
    html = (root / "report/report.html").read_text()
    figures = [part.split("</figure>", 1)[0] for part in html.split("<figure")[1:]]
    assert len(figures) == N_FIGURES and all('<details class="made">' in figure for figure in figures)
    grid = next(figure for figure in figures if "transfer_grid" in figure)
    record = root / "part1/transfer/gram_w1e6.json"
    assert hashlib.sha256(record.read_bytes()).hexdigest() in grid
    assert hashlib.sha256((preview / CONFIG["images"]["style"]).read_bytes()).hexdigest() in grid
    command = json.loads(record.read_text())["command"]
    assert command[:2] == ["stylelab", "--max-pixels"] and "transfer" in command and "--spec" in command
    assert "transfer --spec" in grid and "cpu (" in grid
    text = subprocess.run([_tool("pdftotext"), str(root / "report/report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    appendix = text.split("Appendix: where each figure came from")[-1]
    assert appendix.count("Figure ") >= N_FIGURES - 1  # every figure drawn from records (inputs: images)
    assert hashlib.sha256(record.read_bytes()).hexdigest()[:16] in appendix.replace("\n", "")


def test_preview_guidance_lowers_the_style_distance(preview):
    def distances(name):
        record = preview / f"{PREVIEW_ROOT}/part2/generated/{name}/record.json"
        return json.loads(record.read_text())["style_distances"]

    unguided = distances("unguided")
    for name, loss in (("gram_s0.6", "gram"), ("gram_s0.85", "gram"), ("meanvar_s0.6", "meanvar")):
        assert distances(name)[loss] < unguided[loss], name
    for name in ("comparison", "generation_grid", "guidance_curves"):
        assert (preview / f"{PREVIEW_ROOT}/part2/figures/{name}.png").stat().st_size > 10_000
    for run in ("meanvar_w1", "gram_w1e6"):
        record = json.loads((preview / f"{PREVIEW_ROOT}/part2/transfer/{run}.json").read_text())
        assert record["settings"]["content"] == f"{PREVIEW_ROOT}/part2/generated/unguided/image.png"
        assert record["final_losses"]["total"] < record["initial_loss"]


@pytest.mark.parametrize("name", _records())
def test_preview_losses_fell(preview, name):
    record = json.loads((preview / f"{PREVIEW_ROOT}/part1/{name}.json").read_text())
    assert record["final_losses"]["total"] < record["initial_loss"]
    assert record["history"]["total"][-1] < record["history"]["total"][0]


def test_deleting_a_figure_rebuilds_only_its_parts_figures(preview):
    """The preview draws each part's figures in one job (jobs.runs_in_one_job): a deleted figure, asked for, is
    drawn again by its part's job, the same bytes, and then the report; nothing else. (A figure's own job:
    test_deleting_a_figure_of_a_full_run_rebuilds_only_that_figure.)"""
    figure = f"{PREVIEW_ROOT}/part1/figures/texture_grid.png"
    before = (preview / figure).read_bytes()
    (preview / figure).unlink()
    run = _dry(preview, "--", figure)
    assert job_counts(run.stdout) == {"part1_figures": 1}
    assert figure in planned_outputs(run.stdout)
    assert not any("/figures/" not in f for f in planned_outputs(run.stdout))
    # Asked for everything instead, the figures are remade and then the report, nothing else.
    assert job_counts(_dry(preview, "--", "all").stdout) == {"part1_figures": 1, "report": 1, "all": 1}

    run = snakemake(preview, "--cores", "2", "--configfile", PREVIEW, "--", figure)
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_counts(run.stdout + run.stderr) == {"part1_figures": 1}
    # The figure comes back byte for byte, so Snakemake (which keeps the checksums of small inputs) would
    # leave the report alone, but the job's benchmark file is new, and the report's cost table shows it:
    # the report, and only the report, is made again.
    assert (preview / figure).read_bytes() == before
    run = _dry(preview, "--", "all")
    assert job_counts(run.stdout) == {"report": 1, "all": 1}
    assert f"{PREVIEW_ROOT}/benchmarks/figures/part1.tsv" in run.stdout
    run = snakemake(preview, "--cores", "2", "--configfile", PREVIEW, "--", "report")
    assert run.returncode == 0, run.stderr[-3000:]
    assert job_counts(_dry(preview, "--", "all").stdout) == {}


def test_changing_one_meanvar_weight_reruns_only_that_run_and_what_follows(preview):
    runs = [dict(r) for r in CONFIG["transfer"]["runs"]]
    changed = next(r for r in runs if r["style_loss"] == "meanvar" and r["style_weight"] == 10)
    changed["style_weight"] = 15
    name = write_overlay(preview, "one-weight.yaml", yaml.safe_dump({"transfer": {"runs": runs}}))
    run = _dry(preview, name, "--", "report")  # --configfile takes both files
    # The figures that read the transfers (stylelab.report.contents): transfer_grid, transfer_curves, ...
    figures = [figure for figure in contents.FIGURES if "transfer" in figure.reads]
    assert {"transfer_grid", "transfer_curves"} <= {figure.name for figure in figures}
    # The preview's transfers are one job (jobs.runs_in_one_job), the MeanVar weight sweep's points with them: the
    # point at 10 was that run and is now a point of its own. Part 1's figures, the sweeps' and the report follow.
    assert job_counts(run.stdout) == {"transfer_runs": 1, "part1_figures": 1, "sweeps_figures": 1, "report": 1}
    steps = _preview_config()["transfer"]["steps"]
    point = f"{PREVIEW_ROOT}/sweeps/meanvar_weight/style_weight=10"
    planned = planned_outputs(run.stdout)
    assert {*(f"{PREVIEW_ROOT}/part1/transfer/meanvar_w15_s{step}.png" for step in steps),
            f"{PREVIEW_ROOT}/part1/transfer/meanvar_w15.json", *(f"{point}_s{step}.png" for step in steps),
            f"{point}.json", *(f"{PREVIEW_ROOT}/{f.folder}/{f.name}.png" for f in figures),
            *(f"{PREVIEW_ROOT}/sweeps/figures/meanvar_weight_{d}.png" for d in ("grid", "metrics")),
            f"{PREVIEW_ROOT}/report/report.html"} <= planned
    assert not any("meanvar_w10" in f or "/part2/" in f or "/part3/" in f for f in planned)
    assert sorted((spec["style_loss"], spec["style_weight"]) for spec, _ in command_specs(run.stdout, "transfer")) == \
        [("gram", 1e6), ("meanvar", 1), ("meanvar", 10), ("meanvar", 15), ("meanvar", 20), ("meanvar", 100)]


def test_changing_a_shared_setting_reruns_the_runs_that_use_it(preview):
    name = write_overlay(preview, "inversion-weight.yaml", "inversion:\n  content_weight: 2\n")
    run = _dry(preview, name, "--", "report")
    inversions = {rule: n for rule, n in layer_job_counts(_preview_config()).items() if rule.startswith("inversion")}
    assert job_counts(run.stdout) == {**inversions, "part1_figures": 1, "report": 1}
    assert "params have changed since last execution" in run.stdout
    planned = planned_outputs(run.stdout)
    assert f"{PREVIEW_ROOT}/part1/figures/inversion_grid.png" in planned
    assert not any(f"/part1/{run}/" in f for f in planned for run in ("texture", "transfer"))
    # Scheduling settings are not params: changing them reruns nothing.
    name = write_overlay(preview, "threads.yaml", "jobs:\n  threads: 2\n  mem_mb: 4000\n")
    assert job_counts(_dry(preview, name, "--", "report").stdout) == {}


# ------------------------------------------------------------- the preview's report, read as a reader would

SECTION_HEADINGS = ("Part 1 A. Feature inversion", "Part 1 B. Texture synthesis",
                    "Part 1 C. Gram versus MeanVar style transfer", "Part 2 A. Style-guided diffusion",
                    "Part 2 B. Style guidance versus the style named in the prompt", "Appendix: how this report was made")
# Every declared figure, each once in the report, and two for each of the preview's sweeps.
N_FIGURES = len(contents.FIGURES) + 2 * len(_preview_config()["sweeps"])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; `make test` installs it as root (workflow/scripts/setup-env.sh "
                    "test-tools), or: apt-get install poppler-utils chromium")
    return path


def test_preview_pdf_has_every_section_no_blank_page_and_every_figure(preview, tmp_path):
    pdf = preview / f"{PREVIEW_ROOT}/report/report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run([_tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = " ".join(text.split())
    for heading in SECTION_HEADINGS:
        assert heading in flat, heading
    assert "Stand-in model" in flat and "page 2 of" in flat  # the banner, and page numbers
    # Every page has something on it: rendered at 20 dpi, at least 0.5% of its pixels are not white.
    subprocess.run([_tool("pdftoppm"), "-r", "20", "-gray", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.pgm"))
    assert len(pages) >= 8, len(pages)
    for page in pages:
        with Image.open(page) as img:
            ink = (np.asarray(img) < 235).mean()
        assert ink > 0.005, f"{page.name} is blank ({ink:.4f} of its pixels inked)"
    # The figures: pdfimages lists each embedded image (soft masks, the PNGs' alpha, on rows of their own).
    listing = subprocess.run([_tool("pdfimages"), "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    kinds = [line.split()[2] for line in listing.splitlines()[2:] if line.strip()]
    assert kinds.count("image") == N_FIGURES, listing


def test_preview_html_images_all_decode(preview):
    html = (preview / f"{PREVIEW_ROOT}/report/report.html").read_text()
    sources = re.findall(r'<img src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"', html)
    assert len(sources) == N_FIGURES
    embedded = 0
    for mime, data in sources:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            img.load()
            assert img.width > 200 and img.height > 100 and img.format.lower() == mime
            assert "A" not in img.mode and "transparency" not in img.info  # opaque: no alpha channel embedded
        embedded += len(base64.b64decode(data))
    assert "<img" not in re.sub(r'<img src="data:image/(png|jpeg);base64,', "", html)  # nothing fetched from outside
    # Compressed for the report: the embedded images are well under the figure files, and the page can be
    # mailed (2.5 MB measured; 4.3 MB with every figure at full size).
    files = sum(path.stat().st_size for path in (preview / PREVIEW_ROOT).glob("part*/figures/*.png"))
    assert embedded < 0.6 * files, (embedded, files)
    assert len(html.encode()) < 3_000_000


# Injected at the top of a copy of the page: after the load event, it writes each image's naturalWidth into
# the DOM, which Chromium's --dump-dom prints. The report itself has no script at all.
_PROBE = ("<script>window.addEventListener('load', () => { const p = document.createElement('pre'); "
          "p.id = 'probe'; p.textContent = JSON.stringify({images: Array.from(document.images, i => i.naturalWidth),"
          " title: document.title, scripts: document.scripts.length}); document.body.appendChild(p); });</script>")


def _chromium(page: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """Open `page` in headless Chromium; returns the probe's findings and the console messages logged."""
    probed = tmp_path / ("probed-" + page.name)
    html = page.read_text()
    probed.write_text(html.replace("<head>", "<head>" + _PROBE, 1))
    run = subprocess.run(
        [_tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / ('profile-' + page.stem)}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, flags=re.S)
    assert found, (run.stdout[-2000:], run.stderr[-2000:])
    import html as html_module
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html_module.unescape(found.group(1))), console


def test_chromium_probe_sees_broken_images_and_console_errors(tmp_path):
    """The check below can fail: a page with a broken image and a console error is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><title>t</title><script>console.error("boom")</script></head>'
                    '<body><img src="data:image/png;base64,AAAA"></body></html>')
    probe, console = _chromium(page, tmp_path)
    assert probe["images"] == [0] and any('"boom"' in line for line in console)


def test_preview_html_in_chromium_loads_every_image_without_console_errors(preview, tmp_path):
    probe, console = _chromium(preview / f"{PREVIEW_ROOT}/report/report.html", tmp_path)
    assert len(probe["images"]) == N_FIGURES and all(width > 0 for width in probe["images"]), probe
    assert console == [] and probe["scripts"] == 1  # only the probe


def test_a_prompt_with_a_script_tag_renders_as_text(preview, tmp_path, monkeypatch):
    from stylelab.report import render as report

    monkeypatch.chdir(preview)
    hostile = "<script>document.title = 'pwned'</script> a cat"
    records = []
    for path in sorted((preview / f"{PREVIEW_ROOT}/part2/generated").glob("*/record.json")):
        record = json.loads(path.read_text())
        record["settings"]["prompt"] = hostile
        copy = tmp_path / path.parent.name / "record.json"
        copy.parent.mkdir()
        copy.write_text(json.dumps(record))
        shutil.copy(path.parent / "image.png", copy.parent / "image.png")
        records.append(str(copy))
    page = tmp_path / "hostile.html"
    figure = f"{PREVIEW_ROOT}/part2/figures/generation_grid.png"
    page.write_text(report.render_html({"sections": [{"id": "guidance", "records": records, "figures": [figure]}]}))
    assert "&lt;script&gt;document.title" in page.read_text()
    probe, console = _chromium(page, tmp_path)
    assert probe["title"] != "pwned" and probe["scripts"] == 1 and console == []


def test_editing_a_template_rerenders_only_the_report(preview):
    template = preview / "src/stylelab/report/templates/report.html.j2"
    original = template.read_text()
    try:
        template.write_text(original + "{# a reader's note #}\n")
        run = _dry(preview, "--", "all")
        assert job_counts(run.stdout) == {"report": 1, "all": 1}
        assert planned_outputs(run.stdout) == {f"{PREVIEW_ROOT}/report/report.html",
                                               f"{PREVIEW_ROOT}/report/report.pdf",
                                               f"{PREVIEW_ROOT}/report/summary.json"}
    finally:
        template.write_text(original)
    # A bare touch changes no byte: Snakemake compares the checksums of small inputs and leaves the report be.
    template.touch()
    assert job_counts(_dry(preview, "--", "all").stdout) == {}


def test_snakemake_report_zip_has_the_flagged_outputs(preview, tmp_path):
    run = snakemake(preview, "--cores", "1", "--configfile", PREVIEW, "--report", str(tmp_path / "report.zip"),
                    timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
    for name in ("inversion_grid.png", "comparison.png", "report.pdf"):
        assert any(n.endswith(name) for n in names), name
