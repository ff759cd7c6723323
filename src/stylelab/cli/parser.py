"""The command line's parser: every command, option and help text, made from the settings' one definition.

Imports no torch, diffusers or transformers (`.importlinter` checks it), so `stylelab --help` and the commands
that only read runs start quickly and work where torch is not installed.
"""

from __future__ import annotations

import argparse
import functools
import json

from stylelab.report import contents
from stylelab.run.stopping import DEFAULT_EVERY, Interval
from stylelab.spec.config import COMMAND_SETTINGS
from stylelab.spec.settings import (DEFAULT_MAX_PIXELS, ONE_LAYER_DEFAULTS, GuidanceSettings, ModelChoice,
                                    TransferSettings, add_options, rules_of)
from stylelab import __version__

# What `stylelab models fetch` takes: the model's settings and the precision the runs compute in.
FETCH_SETTINGS = {ModelChoice: ("model", "revision", "fallback"), GuidanceSettings: ("precision",)}


def one_line(text: str) -> str:
    """A message as one line: a newline or other control character in a user's value (a file name, a
    layer) is shown escaped, so the message stays the single line that a log or a test can rely on."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported like every other one: a single line."""

    def error(self, message: str):
        self.exit(2, f"stylelab: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _count(text: str, what: str = "a whole number") -> int:
    """A whole number >= 1; 4e7 is accepted for 40000000."""
    try:
        value = float(text)
    except ValueError:
        value = 0.5
    if not (1 <= value < float("inf") and value == int(value)):
        raise argparse.ArgumentTypeError(f"must be {what} >= 1, got {text}")
    return int(value)


def _interval(text: str) -> Interval:
    try:
        return Interval.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _spec(text: str) -> dict:
    """--spec: the JSON object of settings a workflow rule hands its run (stylelab.spec.config)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object of settings, got {text[:40]}")
    return value


_pixels = functools.partial(_count, what="a whole number of pixels")
# In both places: `stylelab --max-pixels N COMMAND` (as the workflow passes it, for every command) and
# `stylelab COMMAND --max-pixels N`. SUPPRESS keeps the subcommand's absence from undoing the global value.
_MAX_PIXELS_HELP = ("refuse an input image above this many pixels, before decoding it (default: "
                    f"{DEFAULT_MAX_PIXELS:.0f}, 40 megapixels)")


def _checkpointing() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("interruptions")
    g.add_argument("--checkpoint-every", type=_interval, default=Interval.parse(DEFAULT_EVERY), metavar="N|TIME",
                   help="save the run's state every N steps (50) or every TIME of running (90s, 5m, 1h); 0 saves "
                        "only on SIGTERM. A run started again with the same command resumes from it, with the "
                        f"same result. Kept in $STYLELAB_CACHE or .stylelab-cache/ (default: {DEFAULT_EVERY})")
    g.add_argument("--fresh", action="store_true",
                   help="delete this run's checkpoint, if any, and start from the beginning")
    g.add_argument("--max-pixels", type=_pixels, default=argparse.SUPPRESS, metavar="N", help=_MAX_PIXELS_HELP)
    g.add_argument("--spec", type=_spec, default={}, metavar="JSON",
                   help="settings as one JSON object (what the workflow's rules pass); an option given on the "
                        "command line wins over the spec")
    return p


# The settings each command takes (stylelab.spec.config.COMMAND_SETTINGS), and its own defaults.
PART1_DEFAULTS = {"transfer": {}, "invert": ONE_LAYER_DEFAULTS, "texture": ONE_LAYER_DEFAULTS}


def _part1(sub, name: str, help: str, description: str, images: dict[str, bool], layer: str | None = None):
    p = sub.add_parser(name, parents=[_checkpointing()], help=help, description=description)
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder for step_<N>.png and record.json")
    for image, required in images.items():
        several = image == "style" and name == "transfer"  # a transfer blends several styles (--style-blend)
        g.add_argument(f"--{image}", metavar="IMG", required=required, nargs="+" if several else None,
                       help=rules_of(TransferSettings)[image].help if several else
                       rules_of(TransferSettings)[image].help.split(";")[0])
    if layer:
        g.add_argument("--layer", required=True, nargs="+", metavar="LAYER",
                       help=f"{layer}; several layers run one after another in this process, their image and "
                            "record names then need {layer}")
    add_options(g, TransferSettings, COMMAND_SETTINGS[name], PART1_DEFAULTS[name])
    g.add_argument("--image-name", default="step_{step}.png", metavar="TEMPLATE",
                   help="file name of each saved image inside DIR; {step} is replaced by the step "
                        "(default: %(default)s)")
    g.add_argument("--record-name", default="record.json", metavar="NAME",
                   help="file name of the record inside DIR (default: %(default)s)")
    g.add_argument("--quiet", action="store_true", help="no progress bar (log lines still go to stderr)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stylelab",
        description="Neural style experiments with VGG-19 (Gatys et al.): style transfer, feature inversion "
                    "and texture synthesis. Layer names: tutorial (conv_5, relu_10, pool_16) or canonical "
                    "(conv3_1, relu4_2, pool5).",
        epilog="Each command writes DIR/step_<N>.png and DIR/record.json. `stylelab layers` lists the layers.",
    )
    parser.add_argument("--version", action="version", version=f"stylelab {__version__}")
    parser.add_argument("--max-pixels", type=_pixels, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help=_MAX_PIXELS_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _part1(sub, "transfer", "style transfer (Gatys et al.)",
           "Optimise an image to match the content image's features and the style image's statistics. "
           "Inversion is --style-weight 0 --init noise; texture synthesis is --content-weight 0 --init noise.",
           {"content": False, "style": False})
    _part1(sub, "invert", "feature inversion of one layer",
           "Reconstruct the content image from one layer's features, from noise.", {"content": True},
           layer="layer to invert, e.g. conv_5 or relu3_1")
    _part1(sub, "texture", "texture synthesis from one layer",
           "Synthesise a texture whose style statistics at one layer match the style image's, from noise.",
           {"style": True}, layer="layer whose statistics are matched, e.g. pool_8")
    sub.add_parser("layers", help="list the VGG-19 layer names", description="List the VGG-19 layer names.")
    _generate_parser(sub)
    _models_parser(sub)
    _output_parsers(sub)
    _results_parsers(sub)
    sub.add_parser("batch", help="several commands one after another in one process",
                   description="Run stylelab commands one after another in this one process, so that their "
                               "start-up (imports, models) is paid once: what the workflow's jobs.runs_in_one_job "
                               "does. Every LINE is parsed before the first runs; the first that fails ends the "
                               "batch with its status. Each run is the run its own command would make."
                   ).add_argument("lines", nargs="+", metavar="LINE",
                                  help="one command line without `stylelab`, quoted as one word, e.g. "
                                       "'transfer --spec {...} --content c.png --style s.png --out DIR'")
    return parser


def _generate_parser(sub) -> None:
    gen = sub.add_parser(
        "generate", parents=[_checkpointing()], help="a diffusion sample, optionally guided by a style loss",
        description="Generate one image with Stable Diffusion (text-to-image) or a pixel-space DDPM, steered at "
                    "each step by the gradient of the Gram or MeanVar style loss of its clean-image estimate "
                    "(classifier guidance with the style loss in place of a classifier). Writes DIR/image.png "
                    "and DIR/record.json.")
    g = gen.add_argument_group("run")
    add_options(g, ModelChoice)
    add_options(g, GuidanceSettings)
    g.add_argument("--out", required=True, metavar="DIR", help="output folder for image.png and record.json")
    g.add_argument("--manifest", metavar="JSON", help="load exactly the files of this model manifest (written by "
                                                       "`stylelab models fetch`) instead of looking the model up")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _models_parser(sub) -> None:
    models = sub.add_parser("models", help="fetch the diffusion model's files", description="The diffusion models.")
    verbs = models.add_subparsers(dest="verb", metavar="VERB", required=True)
    fetch = verbs.add_parser(
        "fetch", help="fetch the files a run loads into the Hugging Face cache, and write their manifest",
        description="Fetch from the Hugging Face hub exactly the files the pipeline loads for the precision "
                    "(safetensors only; no .ckpt, safety checker or other variants) at the revision, into the "
                    "Hugging Face cache (HF_HOME / HF_HUB_CACHE; HF_TOKEN for a gated model), resuming an "
                    "interrupted download, and check each file's checksum. Without network (HF_HUB_OFFLINE=1, "
                    "or no answer) the cached files are checked instead, with no request. Settings not given "
                    "come from --spec, else from the config files' diffusion section.")
    g = fetch.add_argument_group("model")
    for cls, names in FETCH_SETTINGS.items():
        add_options(g, cls, names)
    g.add_argument("--configfile", nargs="+", metavar="YAML", default=None,
                   help="config files whose diffusion section gives the defaults, later ones laid over earlier "
                        "ones (default: config.yaml, where there is one)")
    g.add_argument("--manifest", metavar="JSON", help="write the manifest here (model, commit, each file's path, "
                                                       "size and SHA-256)")
    g.add_argument("--spec", type=_spec, default={}, metavar="JSON", help="settings as one JSON object")


# The drawings of the declared figures (stylelab.report.contents, which imports neither matplotlib nor torch).
FIGURE_CHOICES = contents.DRAWINGS + contents.SWEEP_DRAWINGS


def _output_parsers(sub) -> None:
    f = sub.add_parser("figure", help="a figure from run records",
                       description="Draw a figure from run records and the images they name (nothing is "
                                   "recomputed). inputs: the content and style images the records name (or "
                                   "--content and --style); layer-grid: one-layer runs (inversion, texture) by "
                                   "layer type and depth; step-grid: a row per run, a column per saved step; "
                                   "curves: the loss history of every run, log scale; sweep-grid and "
                                   "sweep-metrics: a sweep's images and final measures (--vary).")
    f.add_argument("figure", choices=FIGURE_CHOICES, help="which figure")
    f.add_argument("records", nargs="*", metavar="RECORD", help="record JSON files, in the order to show them")
    f.add_argument("--content", metavar="IMAGE", help="inputs only: show this content image instead of those "
                                                      "the records name")
    f.add_argument("--style", nargs="+", metavar="IMAGE", help="inputs only: show these style images instead of "
                                                                "those the records name")
    f.add_argument("--vary", nargs="+", metavar="KEY", help="sweep figures: the varied settings (one or two)")
    f.add_argument("--out", required=True, metavar="PNG", help="the figure file to write")

    s = sub.add_parser("small-png", help="copies of figures made small (for the README's docs/)",
                       description="Write a small copy of each PNG into --out-dir, at most --width pixels wide "
                                   "and --max-kb kilobytes.")
    s.add_argument("images", nargs="+", metavar="PNG")
    s.add_argument("--out-dir", required=True, metavar="DIR")
    s.add_argument("--width", type=_count, default=1000)
    s.add_argument("--max-kb", type=_count, default=250)

    r = sub.add_parser("report", help="the HTML and PDF report from a manifest of figures, records and costs",
                       description="Render the report. The manifest (JSON text or a JSON file, as the workflow's "
                                   "report rule writes it) lists the sections in order, each with its figures "
                                   "and records, the jobs' benchmark files per part, and the effective config.")
    r.add_argument("--manifest", required=True, metavar="JSON", help="manifest: JSON text or a .json file")
    r.add_argument("--html", required=True, metavar="HTML", help="the HTML file to write")
    r.add_argument("--pdf", metavar="PDF", help="also write this PDF (WeasyPrint)")
    r.add_argument("--template", default=None, help="Jinja template (default: the one shipped with stylelab)")
    r.add_argument("--css", default=None, help="style sheet (default: the one shipped with stylelab)")
    r.add_argument("--summary", metavar="JSON", help="also write this machine-readable summary of the manifest's "
                                                     "runs (settings, final metrics, images' SHA-256, provenance), "
                                                     "paths relative to the results folder above the HTML's folder")


def _results_parsers(sub) -> None:
    """Commands on whole results folders: compare two, pack one."""
    c = sub.add_parser("compare", help="two results folders side by side: settings, metrics and images",
                       description="Pair the runs of two results folders by experiment and name (from each "
                                   "folder's report/summary.json, else from the records under it) and write "
                                   "DIR/compare.json and a self-contained DIR/compare.html: per experiment the "
                                   "settings that differ, each pair's metrics and their ratio B/A, and the final "
                                   "images side by side with their difference.")
    c.add_argument("a", metavar="A", help="a results folder, such as results")
    c.add_argument("b", metavar="B", help="the results folder to compare with it, such as results/preview")
    c.add_argument("--out", required=True, metavar="DIR", help="folder for compare.json and compare.html")
    c.add_argument("--all", action="store_true", dest="every", help="list every setting of the paired runs, not "
                                                                    "only those that differ")

    b = sub.add_parser("bundle", help="a finished run as one zip: report, config, records, packages, source",
                       description="Pack a finished run into one zip archive: the report (HTML and PDF), the "
                                   "effective config, every run record, report/summary.json where there is one, "
                                   "the packages (pip freeze) and the code at the records' commit (git archive), "
                                   "with a README that says what is where and how to rebuild it.")
    b.add_argument("--results", required=True, metavar="DIR", help="the run's results folder (the config's results)")
    b.add_argument("--out", metavar="ZIP", help="the zip to write (default: DIR/<bundle.name of the config>.zip, "
                                                "else DIR/stylelab-<commit>.zip)")
    b.add_argument("--config", nargs="+", metavar="YAML", default=None,
                   help="the config files the run used, later ones laid over earlier ones (default: config.yaml)")

    schema = sub.add_parser("config-schema", help="the workflow config's JSON schema, made from the settings",
                            description="Print the schema (YAML) that workflow/schemas/config.schema.yaml holds, or "
                                        "with --reference the configuration reference (Markdown) that "
                                        "docs/configuration.md holds; --write writes it there (or to FILE).")
    schema.add_argument("--reference", action="store_true", help="the configuration reference instead of the schema")
    schema.add_argument("--write", metavar="FILE", nargs="?", const="",
                        help="write it to its file in the repository (or to FILE) instead of printing it")
