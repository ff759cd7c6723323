"""The `stylelab` command: the one door between the workflow (or a user) and the library.

    stylelab transfer --content IMG --style IMG --out DIR [options]
    stylelab invert   --content IMG --layer L --out DIR [options]     (feature inversion)
    stylelab texture  --style IMG --layer L --out DIR [options]       (texture synthesis)
    stylelab generate --style IMG --out DIR [options]                 (style-guided diffusion)
    stylelab models fetch [--model ID] [--revision REV] [--manifest JSON] (the diffusion model's files)
    stylelab figure   inputs|layer-grid|step-grid|curves|gallery|guidance-curves|colour|scales|blend RECORD... --out PNG
    stylelab figure   inputs --content IMG --style IMG... --out PNG       (the input images, no records)
    stylelab report   --manifest JSON --html HTML [--pdf PDF]
    stylelab small-png PNG... --out-dir DIR                              (README pictures)
    stylelab config-schema [--write]                                     (the workflow config's schema)
    stylelab layers

The options of the run commands are made from stylelab.spec.settings (one definition per setting); `--spec JSON`
gives them as one object, as the workflow's rules do, and an option on the command line wins over it.
Part 1 commands write DIR/step_<N>.png for every step listed in --steps and DIR/record.json; generate
writes DIR/image.png and DIR/record.json. A user mistake ends with one line on stderr and exit status 2,
and nothing written. Long runs save checkpoints and resume from them (stylelab.run.runner); a SIGTERM saves
one and exits with status 143.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from typing import Sequence

from stylelab import __version__
from stylelab.report import contents
from stylelab.spec.config import COMMAND_SETTINGS
from stylelab.run.stopping import DEFAULT_EVERY, Interval, RunStopped, stop_on_sigterm
from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import (DEFAULT_MAX_PIXELS, ONE_LAYER_DEFAULTS, GuidanceSettings, ModelChoice, TransferSettings,
                       add_options, resolve, rules_of)

log = logging.getLogger("stylelab")

RESUMABLE = ("transfer", "invert", "texture", "generate")
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


def _pixel_count(text: str) -> int:
    return _count(text, "a whole number of pixels")


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
    g.add_argument("--max-pixels", type=_pixel_count, default=argparse.SUPPRESS, metavar="N", help=_MAX_PIXELS_HELP)
    g.add_argument("--spec", type=_spec, default={}, metavar="JSON",
                   help="settings as one JSON object (what the workflow's rules pass); an option given on the "
                        "command line wins over the spec")
    return p


# The settings each command takes (stylelab.spec.config.COMMAND_SETTINGS), and its own defaults.
PART1_DEFAULTS = {"transfer": {}, "invert": ONE_LAYER_DEFAULTS, "texture": ONE_LAYER_DEFAULTS}


def _checked_spec(command: str, spec: dict, names) -> dict:
    """--spec's settings, after one line for any the command does not take."""
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise StylelabError(f"spec: '{command}' takes no setting {', '.join(map(repr, unknown))}; its settings are: "
                            f"{', '.join(sorted(names))}.")
    return spec


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
    parser.add_argument("--max-pixels", type=_pixel_count, default=DEFAULT_MAX_PIXELS, metavar="N",
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
FIGURE_CHOICES = contents.DRAWINGS


def _output_parsers(sub) -> None:
    f = sub.add_parser("figure", help="a figure from run records",
                       description="Draw a figure from run records and the images they name (nothing is "
                                   "recomputed). inputs: the content and style images the records name (or "
                                   "--content and --style); layer-grid: one-layer runs (inversion, texture) by "
                                   "layer type and depth; step-grid: a row per run, a column per saved step; "
                                   "curves: the loss history of every run, log scale.")
    f.add_argument("figure", choices=FIGURE_CHOICES, help="which figure")
    f.add_argument("records", nargs="*", metavar="RECORD", help="record JSON files, in the order to show them")
    f.add_argument("--content", metavar="IMAGE", help="inputs only: show this content image instead of those "
                                                      "the records name")
    f.add_argument("--style", nargs="+", metavar="IMAGE", help="inputs only: show these style images instead of "
                                                                "those the records name")
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
    sub.add_parser("config-schema", help="the workflow config's JSON schema, made from the settings",
                   description="Print the schema (YAML) that workflow/schemas/config.schema.yaml holds; --write "
                               "writes it there.").add_argument("--write", metavar="FILE", nargs="?",
                                                                const="workflow/schemas/config.schema.yaml")


def _settings(args: argparse.Namespace, layer: str | None = None) -> TransferSettings:
    """The run's settings (of `layer`, for invert and texture): the command line's, else --spec's, else the
    command's defaults."""
    names = COMMAND_SETTINGS[args.command]
    values = resolve(TransferSettings, args, _checked_spec(args.command, args.spec, names),
                     PART1_DEFAULTS[args.command])
    values = {k: v for k, v in values.items() if k in names}
    values["max_pixels"] = args.max_pixels
    if args.command == "invert":
        values.update(content=args.content, style=None, content_layers=[layer], style_layers=[],
                      style_weight=0.0, kind="inversion")
    elif args.command == "texture":
        values.update(content=None, style=args.style, content_layers=[], style_layers=[layer],
                      content_weight=0.0, kind="texture")
    else:
        values.update(content=args.content, style=args.style)
    return TransferSettings(**values)


def _policy(args: argparse.Namespace, *names: str):
    """Checkpointing as the command line asks; the outputs' location is part of the run's identity."""
    from pathlib import Path

    from stylelab.run.checkpoint import CheckpointPolicy

    return CheckpointPolicy(every=args.checkpoint_every, resume=not args.fresh, keep_until_written=True,
                            scope={"out": str(Path(args.out).resolve()), "names": list(names)})


def _generate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from stylelab.diffusion.models import generate
    from stylelab.spec.files import write_bytes_atomic
    from stylelab.engine.images import png_bytes
    from stylelab.spec.records import write_record

    model_names = set(rules_of(ModelChoice))
    _checked_spec("generate", args.spec, model_names | set(rules_of(GuidanceSettings)))
    choice = ModelChoice(**resolve(ModelChoice, args, {k: v for k, v in args.spec.items() if k in model_names}))
    values = resolve(GuidanceSettings, args, {k: v for k, v in args.spec.items() if k not in model_names})
    settings = GuidanceSettings(**values, max_pixels=args.max_pixels)
    policy = _policy(args, "image.png", "record.json")
    image, record = generate(choice, settings, progress=not args.quiet, checkpoints=policy, manifest=args.manifest)
    out = Path(args.out)
    write_bytes_atomic(out / "image.png", png_bytes(image))
    record.outputs = ["image.png", "record.json"]
    write_record(out / "record.json", record)
    policy.outputs_written()
    log.info("wrote %s and %s", out / "image.png", out / "record.json")


def _run(args: argparse.Namespace) -> None:
    if args.command == "layers":
        from stylelab.spec.layers import LAYERS
        for layer in LAYERS:
            print(f"{layer.name:<9} {layer.canonical}")
        return
    if args.command == "figure":
        images = None
        if args.content or args.style:
            if args.figure != "inputs":
                raise StylelabError("--content and --style are for the inputs figure only; the other figures "
                                    "read the images their records name.")
            images = {"content": [args.content] if args.content else [], "style": args.style or []}
        elif not args.records:
            raise StylelabError(f"figure {args.figure} needs record JSON files (or, for inputs, --content/--style).")
        from stylelab.report.figures import write_figure
        log.info("wrote %s", write_figure(args.figure, args.records, args.out, images))
        return
    if args.command == "config-schema":
        from stylelab.spec.config import schema_yaml
        if args.write:
            from stylelab.spec.files import write_bytes_atomic
            write_bytes_atomic(args.write, schema_yaml().encode())
        else:
            print(schema_yaml(), end="")
        return
    if args.command == "small-png":
        from pathlib import Path

        from stylelab.spec.files import write_bytes_atomic
        from stylelab.spec.files import small_png
        for source in args.images:
            out = Path(args.out_dir) / Path(source).name
            data = small_png(source, args.width, args.max_kb * 1000)
            write_bytes_atomic(out, data)
            log.info("wrote %s (%d KB)", out, len(data) // 1000)
        return
    if args.command == "report":
        from stylelab.report.render import read_manifest, write_report
        written = write_report(read_manifest(args.manifest), args.html, args.pdf, args.template, args.css)
        log.info("wrote %s", ", ".join(map(str, written)))
        return
    if args.command == "generate":
        _generate(args)
        return
    if args.command == "models":
        _fetch(args)
        return
    _part1_run(args)


def _part1_run(args: argparse.Namespace) -> None:
    """invert, texture (one layer, or several one after another) and transfer: run, then write images and
    records. Every run is checked before the first starts, and each is the run its own command would make."""
    from stylelab.engine.transfer import check_image_name, check_output_name, run_transfer, write_outputs

    from stylelab.spec.layers import tutorial_name

    # The tutorial's names ({layer} in file names), whichever form was given.
    layers = [tutorial_name(layer) for layer in args.layer] if getattr(args, "layer", None) else [None]
    if len(layers) > 1 and not all("{layer}" in name for name in (args.image_name, args.record_name)):
        raise StylelabError(f"{len(layers)} layers run one after another, so --image-name and --record-name need "
                            "{layer} in them (e.g. --image-name {layer}.png --record-name {layer}.json).")
    runs = []
    for layer in layers:
        settings = _settings(args, layer)
        settings.validate()
        names = (args.image_name.replace("{layer}", layer or ""), args.record_name.replace("{layer}", layer or ""))
        check_image_name(names[0], len(set(settings.steps)))
        check_output_name(names[1], "record name")
        runs.append((settings, names))
    for settings, (image_name, record_name) in runs:
        policy = _policy(args, image_name, record_name)
        result = run_transfer(settings, progress=not args.quiet, checkpoints=policy)
        for path in write_outputs(result, args.out, image_name, record_name):
            log.info("wrote %s", path)
        policy.outputs_written()


def _fetch(args: argparse.Namespace) -> None:
    from pathlib import Path

    from stylelab.spec.config import read_configs
    from stylelab.diffusion.fetch import ModelSource, fetch

    # The config's diffusion section gives the defaults; a spec (the workflow's) gives all there is.
    files = args.configfile if args.configfile is not None else [
        p for p in ("config.yaml",) if Path(p).is_file() and not args.spec]
    diffusion = read_configs(files).get("diffusion", {})
    model = getattr(args, "model", args.spec.get("model"))
    if model is not None and model != diffusion.get("model"):
        diffusion.pop("revision", None)  # the config's pin is of its own model
    _checked_spec("models fetch", args.spec, [n for group in FETCH_SETTINGS.values() for n in group])
    values = {}
    for cls, names in FETCH_SETTINGS.items():
        spec = {k: v for k, v in args.spec.items() if k in names}
        given = resolve(cls, args, spec, {k: diffusion[k] for k in names if k in diffusion})
        values.update({k: given[k] for k in names if k in given})
    choice = ModelChoice(**{k: values[k] for k in FETCH_SETTINGS[ModelChoice] if k in values})
    manifest = fetch(ModelSource.of(choice, values.get("precision", GuidanceSettings.precision)))
    if args.manifest:
        manifest.write(args.manifest)
    print(manifest.summary())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # `figure` takes its records anywhere among its options (argparse would give a "*" positional nothing once
    # an option follows the figure's name); any other stray word is the usual error.
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "figure" and not any(word.startswith("-") for word in extra):
        args.records += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # Only the long runs turn SIGTERM into "save a checkpoint and stop"; the others end at once as usual.
    stopping = stop_on_sigterm() if args.command in RESUMABLE else contextlib.nullcontext()
    try:
        with stopping:
            _run(args)
    except StylelabError as exc:
        print(f"stylelab: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except RunStopped as exc:
        print(f"stylelab: {one_line(str(exc))}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("stylelab: interrupted; the same command resumes from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
