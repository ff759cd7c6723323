"""The documentation against the code: every message docs/troubleshooting.md lists is one the code prints (most of
them made here by the library or the command line, the rest found in the source), every relative link of README.md
and docs/*.md leads to a file and heading, the README stays short, the configuration reference is the one the
settings make, and the pictures the pages show are small PNGs that `make docs` makes.

Convention of docs/troubleshooting.md: each `###` heading holds one or more message fragments in backticks, and
`...` in a fragment stands for the part that varies (a path, a key, a value).
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path
from typing import Callable

import jsonschema
import pytest
import yaml
from PIL import Image

from stylelab.spec import config as workflow_config
from stylelab.spec.errors import StylelabError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 200
PICTURE_MAX_BYTES = 300_000


# -- the troubleshooting page's messages --------------------------------------------------------------------------


def documented_messages() -> list[str]:
    """The backticked fragments of the headings of docs/troubleshooting.md, in order."""
    headings = re.findall(r"^### (.+)$", (DOCS / "troubleshooting.md").read_text(), flags=re.M)
    fragments = [fragment for heading in headings for fragment in re.findall(r"`([^`]+)`", heading)]
    assert len(fragments) >= len(headings) > 0
    return fragments


def source_text() -> str:
    """Every file that prints a message (src/, the workflow's rules and scripts, the Snakefile), with a string written
    over several lines ("abc " then f"def" on the next line) joined back into one."""
    paths = [*(ROOT / "src").rglob("*.py"), *(ROOT / "workflow").rglob("*.smk"), *(ROOT / "workflow").rglob("*.sh"),
             ROOT / "Snakefile"]
    text = "\n".join(path.read_text() for path in paths)
    return re.sub(r"""(["'])\s*\n\s*[rbfRBF]*\1""", "", text)


def matches(fragment: str, message: str) -> bool:
    """Whether `message` holds `fragment`, each `...` in it standing for any text."""
    return re.search(".*?".join(map(re.escape, fragment.split("..."))), message, flags=re.S) is not None


def _error(call: Callable, *args, **kwargs) -> str:
    with pytest.raises(StylelabError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def _config_error(config: dict, change: Callable[[dict], None]) -> str:
    """The line the workflow stops with for `config` changed by `change` (the schema's check, as common.smk runs it)."""
    changed = copy.deepcopy(config)
    change(changed)
    schema = yaml.safe_load((ROOT / workflow_config.SCHEMA_FILE).read_text())
    with pytest.raises(jsonschema.ValidationError) as caught:
        jsonschema.Draft202012Validator(schema).validate(changed)
    return workflow_config.config_message(caught.value)


def _sweep_error(config: dict, sweep: dict) -> str:
    from stylelab.spec.sweeps import plan

    return _error(plan, {**config, "sweeps": {"s": sweep}})


def _cli_error(run_cli, capsys, *argv) -> str:
    """The one error line `stylelab ARGV` ends with (argparse's own mistakes exit through SystemExit)."""
    try:
        code, _, err = run_cli(*map(str, argv))
    except SystemExit as exc:
        code, err = exc.code, capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("stylelab: error: ")]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def _settings_error(**values) -> str:
    from stylelab.spec.settings import TransferSettings

    return _error(TransferSettings(**values).validate)


def _guidance_error(**values) -> str:
    from stylelab.spec.settings import GuidanceSettings

    return _error(GuidanceSettings(**values).validate)


def _out_of_memory() -> str:
    import torch

    from stylelab.run.runtime import explain_out_of_memory

    def fail():
        with explain_out_of_memory(torch.device("cpu"), "for a 64 x 64 image", "Lower --size."):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
    return _error(fail)


def _files(tmp: Path, cat: Path) -> dict[str, Path]:
    """Bad inputs in `tmp`: a text file named .png, a folder, a cut PNG, a 1 x 1 picture, bad and empty JSON."""
    made = {name: tmp / name for name in ("cat.png", "folder", "cut.png", "dot.png", "bad.json", "empty.json",
                                          "empty.yaml")}
    made["cat.png"].write_text("not a picture\n")
    made["folder"].mkdir()
    made["cut.png"].write_bytes(cat.read_bytes()[:2000])
    Image.new("RGB", (1, 1)).save(made["dot.png"])
    made["bad.json"].write_text("{")
    made["empty.json"].write_text("{}")
    made["empty.yaml"].write_text("{}\n")
    return made


def _config_triggers(config: dict, bad: dict[str, Path]) -> dict[str, Callable[[], str]]:
    from stylelab.spec import sweeps

    point = {"experiment": "transfer", "vary": {"style_weight": [1, 10]}}
    images = lambda path: {**config, "images": {**config["images"], "content": str(path)}}  # noqa: E731
    return {
        "config: unknown key ... (did you mean '...'?)":
            lambda: _config_error(config, lambda c: c["transfer"].update(stpes=[5])),
        "config: '...' is ..., but it must be": lambda: _config_error(config, lambda c: c.update(size="big")),
        "(YAML reads ... as text: write":
            lambda: _config_error(config, lambda c: c["texture"].update(style_weight="1e6")),
        "is a required property": lambda: _config_error(config, lambda c: c["inversion"].pop("seed")),
        "config: '...' lists the same entry twice":
            lambda: _config_error(config, lambda c: c["inversion"].update(layers=["conv_1", "conv_1"])),
        "config: '...' has ...; it takes": lambda: _config_error(config, lambda c: c.update(
            sweeps={"s": {"experiment": "transfer", "vary": {"style_weight": [1]}}})),
        "config: the name '...' ... is not a word":
            lambda: _config_error(config, lambda c: c.update(sweeps={"a b": point})),
        "config: images.content: ... does not exist: fix the path":
            lambda: _error(workflow_config.check_input_images, images(bad["folder"] / "none.png")),
        "is a folder, not an image file": lambda: _error(workflow_config.check_input_images, images(bad["folder"])),
        ": name a PNG or JPEG image": lambda: _error(workflow_config.check_input_images, images(bad["cat.png"])),
        "cannot read the config file": lambda: _error(workflow_config.read_configs, [bad["folder"] / "none.yaml"]),
        **dict.fromkeys(["is no setting of a", "sweep can vary:"], lambda: _sweep_error(config, {
            "experiment": "transfer", "vary": {"style_wieght": [1, 2]}})),
        "decides no result (a path, or where and how the job runs)":
            lambda: _sweep_error(config, {"experiment": "transfer", "vary": {"device": ["cpu", "cuda"]}}),
        "is also varied; keep it in one of settings and vary":
            lambda: _sweep_error(config, {**point, "settings": {"style_weight": 5}}),
        "sweep needs a layer": lambda: _sweep_error(config, {"experiment": "texture", "vary": {"seed": [1, 2]}}),
        "run takes one step count": lambda: _sweep_error(config, {"experiment": "texture", "settings": {
            "layer": "conv_1", "steps": [10, 20]}, "vary": {"seed": [1, 2]}}),
        "two values give the same file name": lambda: _sweep_error(config, {"experiment": "transfer", "vary": {
            "style_weight": [1, 1.0]}}),
        "is given twice in": lambda: _error(sweeps.duplicate_keys, "sweeps:\n  a: {}\n  a: {}\n", "over.yaml"),
    }


def _input_triggers(bad: dict[str, Path], cat: Path) -> dict[str, Callable[[], str]]:
    from stylelab.engine.transfer import check_fits_layers, check_image_name, check_output_name
    from stylelab.run import runtime
    from stylelab.spec import files
    from stylelab.spec.layers import tutorial_name

    return {
        "image not found:": lambda: _error(files.read_image, bad["folder"] / "none.png"),
        "image path is a folder, not a file": lambda: _error(files.read_image, bad["folder"]),
        "not an image file:": lambda: _error(files.read_image, bad["cat.png"]),
        "cannot read image ... (damaged or truncated": lambda: _error(files.read_image, bad["cut.png"]),
        "pixels), above the limit of": lambda: _error(files.read_image, cat, max_pixels=1000),
        "pixels; an input image needs at least": lambda: _error(files.read_image, bad["dot.png"]),
        "at size ... the image ... becomes": lambda: _error(files.load_pixels, cat, size=20000),
        "unknown VGG-19 layer '...'. Valid layers:": lambda: _error(tutorial_name, "conv_99"),
        ": a pool takes the number of the convolution before it": lambda: _error(tutorial_name, "pool_1"),
        "too small for layer": lambda: _error(check_fits_layers, 16, 16, ["pool_16"]),
        "must be a plain file name": lambda: _error(check_output_name, "../record.json", "record name"),
        "has no ... but the run saves": lambda: _error(check_image_name, "final.png", 2),
        "out of ... memory": _out_of_memory,
        **({} if runtime.torch.cuda.is_available() else {
            "asked for, but no CUDA GPU is visible to PyTorch": lambda: _error(runtime.resolve_device, "cuda")}),
    }


def _settings_triggers(cat: Path, picasso: Path, bad: dict[str, Path]) -> dict[str, Callable[[], str]]:
    from stylelab.spec.settings import TransferSettings, resolve

    both = {"content": str(cat), "style": str(picasso)}
    two = {"content": str(cat), "style": [str(picasso)] * 2}
    return {
        "unknown ... '...'; choose one of": lambda: _settings_error(**both, device="gpu"),
        "spec: unknown setting": lambda: _error(resolve, TransferSettings, argparse.Namespace(), {"bogus": 1}),
        "content weight and style weight are both 0": lambda: _settings_error(**both, content_weight=0,
                                                                              style_weight=0),
        "weight above 0 but no": lambda: _settings_error(**both, content_layers=[]),
        "image is needed when the": lambda: _settings_error(style=str(picasso), init="noise"),
        "init 'content' needs a content image": lambda: _settings_error(style=str(picasso), content_weight=0),
        "init must be 'content', 'noise' or an image file":
            lambda: _settings_error(**both, init=str(bad["folder"] / "none.png")),
        "style blend weight(s) for": lambda: _settings_error(**two, style_blend=[1, 2, 3]),
        "the style blend weights are all 0": lambda: _settings_error(**two, style_blend=[0, 0]),
        "several style images but a style weight of 0": lambda: _settings_error(**two, style_weight=0),
        "colour preservation '...' needs a content image and a style image":
            lambda: _settings_error(**both, style_weight=0, preserve_colors="luminance"),
        "the scales must increase from coarse to fine": lambda: _settings_error(**both, scales=[16, 16]),
        "scale step count(s) for": lambda: _settings_error(**both, scales=[8, 16], scale_steps=[2, 2]),
        "scale steps given without scales": lambda: _settings_error(**both, scale_steps=[2]),
        "and the last scale ... differ": lambda: _settings_error(**both, size=64, scales=[32, 48]),
        "a style image is needed for guidance": lambda: _guidance_error(guidance_factor=0.5),
        "the guidance window needs 0 <= start <= end <= 1": lambda: _guidance_error(guidance_start=0.8,
                                                                                  guidance_end=0.2),
        "size must be a multiple of 8": lambda: _guidance_error(size=20),
        "makes a ... image (": lambda: _guidance_error(size=4096, max_pixels=10**6),
    }


def _command_triggers(run_cli, capsys, bad: dict[str, Path], cat: Path, picasso: Path) -> dict[str, Callable[[], str]]:
    from stylelab.diffusion import fetch
    from stylelab.report import contents, render
    from stylelab.report.runs import load_runs
    from stylelab.run.stopping import RunStopped

    cli = lambda *argv: lambda: _cli_error(run_cli, capsys, *argv)  # noqa: E731
    out, none = bad["folder"] / "out", bad["folder"] / "none.json"
    return {
        "stylelab: error: argument --...:": cli("transfer", "--steps", "0", "--out", out),
        "invalid choice:": cli("transfer", "--style-loss", "l1", "--out", out),
        "spec: '...' takes no setting": cli("transfer", "--spec", '{"prompt": "a"}', "--out", out),
        "layers run one after another, so --image-name and --record-name need":
            cli("invert", "--content", cat, "--layer", "conv_1", "relu_1", "--out", out),
        **dict.fromkeys(["is not available:", "HF_HUB_OFFLINE is set", "and the cache holds no snapshot of it"],
                        cli("models", "fetch", "--model", "no-one/no-such-model", "--revision", "main", "--fallback",
                            "error", "--configfile", bad["empty.yaml"])),
        "must be one of": lambda: _error(fetch.ModelSource("embedded-sd", "main", "fp8").validate),
        "cannot read the model manifest": lambda: _error(fetch.read_manifest, none),
        "record ... not found; run its experiment first": lambda: _error(load_runs, [none]),
        "is not valid JSON (": lambda: _error(load_runs, [bad["bad.json"]]),
        "is not a stylelab record": lambda: _error(load_runs, [bad["empty.json"]]),
        "no records given": lambda: _error(load_runs, []),
        "needs record JSON files": cli("figure", "curves", "--out", out / "f.png"),
        "--content and --style are for the inputs figure only":
            cli("figure", "curves", "--content", cat, "--out", out / "f.png"),
        "cannot read figure": lambda: _error(render.embedded_image, bad["folder"] / "none.png", True),
        "is not a PNG file; make it again": lambda: _error(render.embedded_image, picasso, True),
        "the report manifest": lambda: _error(render.read_manifest, "{"),
        "cannot read report manifest": lambda: _error(render.read_manifest, str(none)),
        "unknown report section": lambda: _error(contents.section, "part9"),
        "results folder ... does not exist": cli("compare", bad["folder"] / "none", bad["folder"], "--out", out),
        "holds no run records (": cli("bundle", "--results", bad["folder"]),
        "stopped by SIGTERM after step": lambda: str(RunStopped(3, 10, None)),
    }


def triggers(config: dict, tmp: Path, run_cli, capsys, cat: Path, picasso: Path) -> dict[str, Callable[[], str]]:
    """{documented fragment: a call that makes the code print it}: the messages that are cheap to provoke."""
    bad = _files(tmp, cat)
    return {**_config_triggers(config, bad), **_input_triggers(bad, cat), **_settings_triggers(cat, picasso, bad),
            **_command_triggers(run_cli, capsys, bad, cat, picasso)}


def test_the_troubleshooting_page_lists_messages_the_code_prints(config, tmp_path, run_cli, capsys, cat, picasso,
                                                                 monkeypatch):
    """Every documented fragment is made here by the call that prints it, or at least is in the source verbatim."""
    monkeypatch.chdir(tmp_path)  # no config.yaml here: `models fetch` reads only the file it is given
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # the fetch asks no hub, finds no cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    documented = documented_messages()
    made = triggers(config, tmp_path, run_cli, capsys, cat, picasso)
    assert not set(made) - set(documented), "triggers of messages the page does not list"
    for fragment, call in made.items():
        message = call()
        assert matches(fragment, message), f"{fragment!r} is not in what the code prints: {message!r}"
    source = source_text()
    missing = [f for f in documented if f not in made and not all(p in source for p in f.split("...") if p)]
    assert not missing, f"docs/troubleshooting.md lists messages the code no longer prints: {missing}"


def test_a_message_the_code_no_longer_prints_is_caught():
    """The check has teeth: the old README's `cannot load diffusion model` is in no source file."""
    source = source_text()
    assert not all(piece in source for piece in "cannot load diffusion model".split("..."))
    assert matches("the loss became ... at step ...: the optimisation diverged",
                   "the loss became nan at step 7 (style not finite): the optimisation diverged, most likely")
    assert not matches("image not found: ...", "image path is a folder, not a file: x")


# -- links, length, generated pages, pictures ---------------------------------------------------------------------


def _prose(text: str) -> str:
    """A page without its fenced code blocks and inline code, where a link or heading is only an example."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings: lower case, punctuation dropped, spaces as -, repeats numbered."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M),
                              flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def links(page: Path) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", _prose(page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_leads_to_a_file_and_heading(page):
    targets = [t for t in links(page) if not re.match(r"[a-z]+:", t)]
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.is_file() and ROOT in file.parents, f"{page.name}: link to {target}: no such file"
        if anchor:
            assert file.suffix == ".md" and anchor in anchors(file), f"{page.name}: link to {target}: no such heading"


def test_the_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    assert set(DOCS.glob("*.md")) <= linked, "a page under docs/ the README does not link"


def test_the_configuration_reference_is_the_one_the_settings_make():
    """docs/configuration.md is written by `stylelab config-schema --reference --write`; it must be current."""
    assert (ROOT / workflow_config.REFERENCE_FILE).read_text() == workflow_config.reference_markdown(), \
        "run `stylelab config-schema --reference --write` and commit docs/configuration.md"


def test_the_pictures_are_small_pngs_that_make_docs_makes_and_a_page_shows():
    shown = {(page.parent / t).resolve() for page in PAGES for t in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)",
                                                                                 _prose(page.read_text()))}
    assert shown == set(DOCS.glob("*.png")), "a picture under docs/ that no page shows, or one shown from elsewhere"
    made = re.search(r"^DOCS_FIGURES := (.*?)\ndocs:", (ROOT / "Makefile").read_text(), flags=re.S | re.M).group(1)
    assert {p.name for p in shown} == set(re.findall(r"/(\w+\.png)", made))
    for picture in shown:
        assert picture.stat().st_size < PICTURE_MAX_BYTES and picture.read_bytes().startswith(b"\x89PNG"), picture
