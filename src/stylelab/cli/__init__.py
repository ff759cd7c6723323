"""The `stylelab` command: the one door between the workflow (or a user) and the library (`stylelab --help`).

The run commands take their settings as options made from stylelab.spec.settings, or as one JSON object
(`--spec`, as the workflow's rules pass them; an option wins over it). Part 1 commands write DIR/step_<N>.png
for every listed step and DIR/record.json; generate writes DIR/image.png and DIR/record.json. A user mistake
ends with one line on stderr, exit status 2 and nothing written. Long runs save checkpoints and resume from them
(stylelab.run.runner); a SIGTERM saves one and exits with status 143.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Sequence

from stylelab.cli.parser import FETCH_SETTINGS, PART1_DEFAULTS, build_parser, one_line
from stylelab.run.stopping import RunStopped, stop_on_sigterm
from stylelab.spec.config import COMMAND_SETTINGS
from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import (GuidanceSettings, ModelChoice, TransferSettings, feature_inversion, resolve,
                                    rules_of, texture_synthesis)

log = logging.getLogger("stylelab")

RESUMABLE = ("transfer", "invert", "texture", "generate")


def _checked_spec(command: str, spec: dict, names) -> dict:
    """--spec's settings, after one line for any the command does not take."""
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise StylelabError(f"spec: '{command}' takes no setting {', '.join(map(repr, unknown))}; its settings are: "
                            f"{', '.join(sorted(names))}.")
    return spec


def _settings(args: argparse.Namespace, layer: str | None = None) -> TransferSettings:
    """The run's settings (of `layer`, for invert and texture): the command line's, else --spec's, else the
    command's defaults."""
    names = COMMAND_SETTINGS[args.command]
    values = resolve(TransferSettings, args, _checked_spec(args.command, args.spec, names),
                     PART1_DEFAULTS[args.command])
    values = {k: v for k, v in values.items() if k in names} | {"max_pixels": args.max_pixels}
    if args.command == "invert":
        return feature_inversion(args.content, layer, **values)
    if args.command == "texture":
        return texture_synthesis(args.style, layer, **values)
    return TransferSettings(content=args.content, style=args.style, **values)


def _policy(args: argparse.Namespace, *names: str):
    """Checkpointing as the command line asks; the outputs' location is part of the run's identity."""
    from stylelab.run.checkpoint import CheckpointPolicy

    return CheckpointPolicy(every=args.checkpoint_every, resume=not args.fresh, keep_until_written=True,
                            scope={"out": str(Path(args.out).resolve()), "names": list(names)})


def _generate(args: argparse.Namespace) -> None:
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
    record.outputs, record.command = ["image.png", "record.json"], args.argv
    write_record(out / "record.json", record)
    policy.outputs_written()
    log.info("wrote %s and %s", out / "image.png", out / "record.json")


def _run(args: argparse.Namespace) -> None:
    if args.command == "layers":
        from stylelab.spec.layers import LAYERS
        for layer in LAYERS:
            print(f"{layer.name:<9} {layer.canonical}")
    elif args.command == "figure":
        _figure(args)
    elif args.command == "config-schema":
        from stylelab.spec.config import REFERENCE_FILE, SCHEMA_FILE, reference_markdown, schema_yaml
        from stylelab.spec.files import write_bytes_atomic
        text = reference_markdown() if args.reference else schema_yaml()
        if args.write is None:
            print(text, end="")
        else:
            write_bytes_atomic(args.write or (REFERENCE_FILE if args.reference else SCHEMA_FILE), text.encode())
    elif args.command == "small-png":
        from stylelab.spec.files import small_png, write_bytes_atomic
        for source in args.images:
            out = Path(args.out_dir) / Path(source).name
            data = small_png(source, args.width, args.max_kb * 1000)
            write_bytes_atomic(out, data)
            log.info("wrote %s (%d KB)", out, len(data) // 1000)
    elif args.command == "report":
        _report(args)
    elif args.command == "compare":
        from stylelab.report.compare import table, write_compare
        print(table(write_compare(args.a, args.b, args.out, args.every)))
        log.info("wrote %s and %s", Path(args.out) / "compare.json", Path(args.out) / "compare.html")
    elif args.command == "bundle":
        from stylelab.report.bundle import write_bundle
        configs = args.config if args.config is not None else [p for p in ("config.yaml",) if Path(p).is_file()]
        log.info("wrote %s", write_bundle(args.results, args.out, configs))
    else:
        {"generate": _generate, "models": _fetch}.get(args.command, _part1_run)(args)


def _report(args: argparse.Namespace) -> None:
    """The report, and with --summary its runs' summary (paths relative to the results folder above the HTML's)."""
    from stylelab.report.render import read_manifest, write_report
    from stylelab.report.summary import build_summary, manifest_records, write_summary

    manifest = read_manifest(args.manifest)
    summary = build_summary(manifest_records(manifest), Path(args.html).parent.parent) if args.summary else None
    written = write_report(manifest, args.html, args.pdf, args.template, args.css)
    if summary is not None:
        written.append(write_summary(summary, args.summary))
    log.info("wrote %s", ", ".join(map(str, written)))


def _figure(args: argparse.Namespace) -> None:
    images = None
    if args.content or args.style:
        if args.figure != "inputs":
            raise StylelabError("--content and --style are for the inputs figure only; the other figures "
                                "read the images their records name.")
        images = {"content": [args.content] if args.content else [], "style": args.style or []}
    elif not args.records:
        raise StylelabError(f"figure {args.figure} needs record JSON files (or, for inputs, --content/--style).")
    from stylelab.report.figures import write_figure
    log.info("wrote %s", write_figure(args.figure, args.records, args.out, images, args.vary))


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
        result.record.command = args.argv
        for path in write_outputs(result, args.out, image_name, record_name):
            log.info("wrote %s", path)
        policy.outputs_written()


def _fetch(args: argparse.Namespace) -> None:
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


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    # `figure` takes its records anywhere among its options (argparse would give a "*" positional nothing once
    # an option follows the figure's name); any other stray word is the usual error.
    args, extra = parser.parse_known_args(argv)
    args.argv = ["stylelab", *(sys.argv[1:] if argv is None else map(str, argv))]  # what records say made them
    if extra and getattr(args, "command", None) == "figure" and not any(word.startswith("-") for word in extra):
        args.records += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _stopping(args: argparse.Namespace):
    """Only the long runs turn SIGTERM into "save a checkpoint and stop"; the others end at once as usual."""
    return stop_on_sigterm() if args.command in RESUMABLE else contextlib.nullcontext()


def _batch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`stylelab batch LINE...`: each line as its own command, with the batch's global options (--max-pixels)
    before it, so its records say the command that alone would have made them."""
    before = args.argv[1:args.argv.index("batch")]
    runs = []
    for line in args.lines:
        words = shlex.split(line)
        if words[:1] == ["batch"]:
            raise StylelabError("batch: a line of a batch cannot be a batch itself.")
        runs.append(_parse(parser, [*before, *words]))
    for number, run in enumerate(runs, 1):
        log.info("batch %d/%d: %s", number, len(runs), shlex.join(run.argv))
        with _stopping(run):
            _run(run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        if args.command == "batch":
            _batch(parser, args)
        else:
            with _stopping(args):
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
