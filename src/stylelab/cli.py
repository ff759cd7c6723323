"""The `stylelab` command: the one door between the workflow (or a user) and the library.

    stylelab transfer --content IMG --style IMG --out DIR [options]
    stylelab invert   --content IMG --layer L --out DIR [options]     (feature inversion)
    stylelab texture  --style IMG --layer L --out DIR [options]       (texture synthesis)
    stylelab figure   layer-grid|step-grid|curves RECORD... --out PNG   (figures from records)
    stylelab report   --manifest JSON --html HTML [--pdf PDF]
    stylelab small-png PNG... --out-dir DIR                              (README pictures)

Each writes DIR/step_<N>.png for every step listed in --steps and DIR/record.json. A user mistake ends
with one line on stderr and exit status 2, and nothing written. Long runs save checkpoints and resume from
them (stylelab.checkpoint); a SIGTERM saves one and exits with status 143.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from typing import Sequence

from . import __version__
from .checkpoint import DEFAULT_EVERY, Interval, RunStopped, stop_on_sigterm
from .errors import StylelabError
from .images import DEFAULT_MAX_PIXELS
from .losses import STYLE_LOSSES
from .runtime import DEVICES
from .vgg import TUTORIAL_CONTENT_LAYERS, TUTORIAL_STYLE_LAYERS, WEIGHTS_SOURCES

log = logging.getLogger("stylelab")

RESUMABLE = ("transfer", "invert", "texture", "generate")


def one_line(text: str) -> str:
    """A message as one line: a newline or other control character in a user's value (a file name, a
    layer) is shown escaped, so the message stays the single line that a log or a test can rely on."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported like every other one: a single line."""

    def error(self, message: str):
        self.exit(2, f"stylelab: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _number(text: str, convert, minimum, what: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got '{text}'") from None
    if not minimum <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be {what} >= {minimum:g}, got {text}")
    return value


def _size(text: str):
    return "auto" if text == "auto" else _number(text, int, 8, "'auto' or a whole number of pixels")


def _positive_int(text: str) -> int:
    return _number(text, int, 1, "a whole number")


def _non_negative(text: str) -> float:
    return _number(text, float, 0.0, "a finite number")


def _seed(text: str) -> int:
    value = _number(text, int, 0, "a whole number")
    if value >= 2**63:  # torch's generators take a signed 64-bit seed
        raise argparse.ArgumentTypeError(f"must be below 2**63, got {text}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got '{text}'")
    return value


def _pixel_count(text: str) -> int:
    """A whole number of pixels; 4e7 is accepted for 40000000."""
    value = _number(text, float, 1, "a number of pixels")
    if value != int(value):
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels, got {text}")
    return int(value)


def _interval(text: str) -> Interval:
    try:
        return Interval.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    return p


def _common(default_steps: list[int]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder for step_<N>.png and record.json")
    g.add_argument("--steps", type=_positive_int, nargs="+", default=default_steps, metavar="N",
                   help="optimiser iterations; an image is saved at each listed step (default: %(default)s)")
    g.add_argument("--size", type=_size, default="auto",
                   help="short side of the image in pixels, or 'auto' (512 on a GPU, 128 on a CPU; default)")
    g.add_argument("--init", default=None, metavar="content|noise|IMG",
                   help="start image: the content image, seeded torch.randn noise, or an image file")
    g.add_argument("--seed", type=_seed, default=0, help="seed of every random draw (default: %(default)s)")
    g.add_argument("--weights", choices=WEIGHTS_SOURCES, default="caffe",
                   help="VGG-19 weights: caffe (original, embedded; default), torchvision (ImageNet, from the "
                        "torch hub cache), random (tests only)")
    g.add_argument("--device", choices=DEVICES, default="auto", help="default: %(default)s (cuda when available)")
    g.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs", help="default: %(default)s")
    g.add_argument("--lr", type=_positive, default=None, help="learning rate (default: 1 for lbfgs, 0.02 for adam)")
    g.add_argument("--bounds", choices=("project", "clamp"), default="project",
                   help="pixels are clamped to [0, 1] before each evaluation; 'project' (default) also zeroes "
                        "the gradient of pixels on a bound that point outward, which keeps L-BFGS stable; "
                        "'clamp' is the tutorial's behaviour")
    g.add_argument("--tv-weight", type=_non_negative, default=0.0, help="total-variation weight (default: 0)")
    g.add_argument("--record-every", type=_positive_int, default=1, metavar="K",
                   help="keep the losses of every K-th step in the record (default: every step)")
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

    t = sub.add_parser("transfer", parents=[_common([300]), _checkpointing()], help="style transfer (Gatys et al.)",
                       description="Optimise an image to match the content image's features and the style "
                                   "image's statistics. Inversion is --style-weight 0 --init noise; texture "
                                   "synthesis is --content-weight 0 --init noise.")
    t.add_argument("--content", metavar="IMG", help="content image (PNG or JPEG)")
    t.add_argument("--style", metavar="IMG", help="style image, resized to the content image's size")
    t.add_argument("--style-loss", choices=STYLE_LOSSES, default="gram", help="default: %(default)s")
    t.add_argument("--style-weight", type=_non_negative, default=1e6, help="default: %(default)g")
    t.add_argument("--content-weight", type=_non_negative, default=1.0, help="default: %(default)g")
    t.add_argument("--content-layers", nargs="*", default=list(TUTORIAL_CONTENT_LAYERS), metavar="LAYER",
                   help="default: %(default)s")
    t.add_argument("--style-layers", nargs="*", default=list(TUTORIAL_STYLE_LAYERS), metavar="LAYER",
                   help="default: %(default)s")

    i = sub.add_parser("invert", parents=[_common([1000]), _checkpointing()], help="feature inversion of one layer",
                       description="Reconstruct the content image from one layer's features, from noise.")
    i.add_argument("--content", metavar="IMG", required=True, help="image whose features are inverted")
    i.add_argument("--layer", required=True, help="layer to invert, e.g. conv_5 or relu3_1")
    i.add_argument("--content-weight", type=_non_negative, default=1.0, help="default: %(default)g")

    x = sub.add_parser("texture", parents=[_common([1000]), _checkpointing()], help="texture synthesis from one layer",
                       description="Synthesise a texture whose style statistics at one layer match the style "
                                   "image's, from noise.")
    x.add_argument("--style", metavar="IMG", required=True, help="image whose texture is synthesised")
    x.add_argument("--layer", required=True, help="layer whose statistics are matched, e.g. pool_8")
    x.add_argument("--style-loss", choices=STYLE_LOSSES, default="gram", help="default: %(default)s")
    x.add_argument("--style-weight", type=_non_negative, default=1e6, help="default: %(default)g")

    sub.add_parser("layers", help="list the VGG-19 layer names", description="List the VGG-19 layer names.")

    gen = sub.add_parser(
        "generate", parents=[_checkpointing()], help="a diffusion sample, optionally guided by a style loss",
        description="Generate one image with Stable Diffusion (text-to-image) or a pixel-space DDPM, steered at "
                    "each step by the gradient of the Gram or MeanVar style loss of its clean-image estimate "
                    "(classifier guidance with the style loss in place of a classifier). Writes DIR/image.png "
                    "and DIR/record.json.")
    gen.add_argument("--prompt", default="a cat", help="text prompt (Stable Diffusion; default: %(default)s)")
    gen.add_argument("--negative-prompt", default="", help="unconditional prompt of classifier-free guidance")
    gen.add_argument("--model", default="CompVis/stable-diffusion-v1-4", metavar="ID|PATH|embedded-sd|embedded-ddpm",
                     help="hub id, local folder in diffusers' layout, or a built-in stand-in with random weights "
                          "(default: %(default)s)")
    gen.add_argument("--fallback", choices=("embedded", "error"), default="embedded",
                     help="when the model cannot be loaded: use the stand-in of the same kind and say so "
                          "(default), or stop")
    gen.add_argument("--steps", type=_positive_int, default=100, help="denoising steps (default: %(default)s)")
    gen.add_argument("--size", type=_positive_int, default=None,
                     help="image size in pixels, a multiple of 8 (default: the model's own)")
    gen.add_argument("--cfg-scale", type=_non_negative, default=7.5,
                     help="classifier-free guidance scale, Stable Diffusion only (default: %(default)s)")
    gen.add_argument("--style", metavar="IMG", help="style image for guidance and for the record's distances")
    gen.add_argument("--style-loss", choices=STYLE_LOSSES, default="gram", help="default: %(default)s")
    gen.add_argument("--guidance-factor", type=_non_negative, default=0.0,
                     help="s in eps - s * g * sqrt(1 - abar_t); 0 is unguided (default)")
    gen.add_argument("--guidance-start", type=_non_negative, default=0.0,
                     help="fraction of the schedule where guidance starts (default: 0)")
    gen.add_argument("--guidance-end", type=_non_negative, default=1.0,
                     help="fraction of the schedule where guidance ends (default: 1)")
    gen.add_argument("--guidance-every", type=_positive_int, default=1, metavar="K",
                     help="guide every K-th step inside the window (default: 1)")
    gen.add_argument("--track-every", type=_positive_int, default=1, metavar="K",
                     help="record the style loss of x0 every K-th unguided step (default: 1)")
    gen.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="default: %(default)s")
    gen.add_argument("--weights", choices=WEIGHTS_SOURCES, default="caffe", help="VGG-19 weights of the style loss")
    gen.add_argument("--seed", type=_seed, default=0, help="seed of the initial noise (default: %(default)s)")
    gen.add_argument("--device", choices=DEVICES, default="auto", help="default: %(default)s")
    gen.add_argument("--out", required=True, metavar="DIR", help="output folder for image.png and record.json")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    f = sub.add_parser("figure", help="a figure from run records",
                       description="Draw a figure from run records and the images they name (nothing is "
                                   "recomputed). layer-grid: one-layer runs (inversion, texture) by layer type "
                                   "and depth; step-grid: a row per run, a column per saved step; curves: the "
                                   "loss history of every run, log scale.")
    f.add_argument("figure", choices=("layer-grid", "step-grid", "curves", "gallery", "guidance-curves"),
                   help="which figure")
    f.add_argument("records", nargs="+", metavar="RECORD", help="record JSON files, in the order to show them")
    f.add_argument("--out", required=True, metavar="PNG", help="the figure file to write")

    s = sub.add_parser("small-png", help="copies of figures made small (for the README's docs/)",
                       description="Write a small copy of each PNG into --out-dir, at most --width pixels wide "
                                   "and --max-kb kilobytes.")
    s.add_argument("images", nargs="+", metavar="PNG")
    s.add_argument("--out-dir", required=True, metavar="DIR")
    s.add_argument("--width", type=_positive_int, default=1000)
    s.add_argument("--max-kb", type=_positive_int, default=250)

    r = sub.add_parser("report", help="the HTML and PDF report from a manifest of figures, records and costs",
                       description="Render the report. The manifest (JSON text or a JSON file, as the workflow's "
                                   "report rule writes it) lists the sections in order, each with its figures "
                                   "and records, the jobs' benchmark files per part, and the effective config.")
    r.add_argument("--manifest", required=True, metavar="JSON", help="manifest: JSON text or a .json file")
    r.add_argument("--html", required=True, metavar="HTML", help="the HTML file to write")
    r.add_argument("--pdf", metavar="PDF", help="also write this PDF (WeasyPrint)")
    r.add_argument("--template", default="report/templates/report.html.j2",
                   help="Jinja template (default: %(default)s)")
    r.add_argument("--css", default="report/style.css", help="style sheet (default: %(default)s)")
    return parser


def _settings(args: argparse.Namespace):
    from .transfer import TransferSettings, feature_inversion, texture_synthesis

    common = dict(steps=args.steps, size=args.size, seed=args.seed, weights=args.weights, device=args.device,
                  optimizer=args.optimizer, lr=args.lr, bounds=args.bounds, tv_weight=args.tv_weight,
                  record_every=args.record_every, max_pixels=args.max_pixels)
    if args.init is not None:
        common["init"] = args.init
    if args.command == "invert":
        return feature_inversion(args.content, args.layer, content_weight=args.content_weight, **common)
    if args.command == "texture":
        return texture_synthesis(args.style, args.layer, style_weight=args.style_weight,
                                 style_loss=args.style_loss, **common)
    return TransferSettings(content=args.content, style=args.style, style_loss=args.style_loss,
                            style_weight=args.style_weight, content_weight=args.content_weight,
                            content_layers=args.content_layers, style_layers=args.style_layers, **common)


def _policy(args: argparse.Namespace, *names: str):
    """Checkpointing as the command line asks; the outputs' location is part of the run's identity."""
    from pathlib import Path

    from .checkpoint import CheckpointPolicy

    return CheckpointPolicy(every=args.checkpoint_every, resume=not args.fresh, keep_until_written=True,
                            scope={"out": str(Path(args.out).resolve()), "names": list(names)})


def _generate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .diffusion.guidance import GuidanceSettings, sample
    from .diffusion.models import load_model
    from .images import png_bytes, write_bytes_atomic
    from .records import write_record

    settings = GuidanceSettings(
        prompt=args.prompt, negative_prompt=args.negative_prompt, steps=args.steps, seed=args.seed, size=args.size,
        cfg_scale=args.cfg_scale, style=args.style, style_loss=args.style_loss, guidance_factor=args.guidance_factor,
        guidance_start=args.guidance_start, guidance_end=args.guidance_end, guidance_every=args.guidance_every,
        weights=args.weights, precision=args.precision, track_every=args.track_every, max_pixels=args.max_pixels)
    settings.validate()  # before loading any model
    if args.style:
        from .images import read_image
        read_image(args.style, args.max_pixels)
    model = load_model(args.model, fallback=args.fallback, seed=args.seed)
    policy = _policy(args, "image.png", "record.json")
    image, record = sample(model, settings, device=args.device, progress=not args.quiet, checkpoints=policy)
    out = Path(args.out)
    write_bytes_atomic(out / "image.png", png_bytes(image))
    record["outputs"] = ["image.png", "record.json"]
    write_record(out / "record.json", record)
    policy.outputs_written()
    log.info("wrote %s and %s", out / "image.png", out / "record.json")


def _run(args: argparse.Namespace) -> None:
    if args.command == "layers":
        from .vgg import LAYERS
        for layer in LAYERS:
            print(f"{layer.name:<9} {layer.canonical}")
        return
    if args.command == "figure":
        from .figures import write_figure
        log.info("wrote %s", write_figure(args.figure, args.records, args.out))
        return
    if args.command == "small-png":
        from pathlib import Path

        from .images import small_png, write_bytes_atomic
        for source in args.images:
            out = Path(args.out_dir) / Path(source).name
            data = small_png(source, args.width, args.max_kb * 1000)
            write_bytes_atomic(out, data)
            log.info("wrote %s (%d KB)", out, len(data) // 1000)
        return
    if args.command == "report":
        from .report import read_manifest, write_report
        written = write_report(read_manifest(args.manifest), args.html, args.pdf, args.template, args.css)
        log.info("wrote %s", ", ".join(map(str, written)))
        return
    if args.command == "generate":
        _generate(args)
        return
    from .transfer import check_image_name, check_output_name, run_transfer, write_outputs

    settings = _settings(args)
    check_image_name(args.image_name, len(set(args.steps)))  # before the run, not after it
    check_output_name(args.record_name, "record name")
    policy = _policy(args, args.image_name, args.record_name)
    result = run_transfer(settings, progress=not args.quiet, checkpoints=policy)
    for path in write_outputs(result, args.out, args.image_name, args.record_name):
        log.info("wrote %s", path)
    policy.outputs_written()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
