"""Figures and the HTML report, drawn from real (small) run records and their images."""

import importlib.resources
import io
import json
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylelab.report import analysis, contents, figures, render as report
from stylelab.spec import provenance
from stylelab.spec.errors import StylelabError
from stylelab.report.runs import load_runs
from stylelab.spec.settings import format_number
from stylelab.engine.transfer import run_transfer, write_outputs
from stylelab.spec.settings import TransferSettings, feature_inversion

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["conv_1", "relu_1", "pool_2", "conv_3", "relu3_1"]  # two conv, two relu (one canonical), one pool


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, cat, tiny_settings):
    """Records and images of a few tiny real runs, written as the CLI writes them."""
    out = tmp_path_factory.mktemp("runs")
    small = dict(size=32, device="cpu", weights="caffe")
    for layer in LAYERS:
        settings = feature_inversion(str(cat), layer, steps=(3,), **small)
        write_outputs(run_transfer(settings, progress=False), out / "inversion", f"{layer}.png", f"{layer}.json")
    for loss, weight in (("gram", 1e6), ("meanvar", 10.0)):
        settings = tiny_settings(style_loss=loss, style_weight=weight, steps=(2, 4), weights="caffe")
        name = f"{loss}_w{format_number(weight)}"
        write_outputs(run_transfer(settings, progress=False), out / "transfer", name + "_s{step}.png", name + ".json")
    return out


def _inversion_records(runs_dir):
    return [runs_dir / "inversion" / f"{layer}.json" for layer in LAYERS]


def _transfer_records(runs_dir):
    return [runs_dir / "transfer" / "gram_w1e6.json", runs_dir / "transfer" / "meanvar_w10.json"]


@pytest.mark.parametrize("value, text", [(1e6, "1e6"), (1000000.0, "1e6"), (10, "10"), (10.0, "10"),
                                         (0.5, "0.5"), (2.5e-3, "0.0025"), (1e-7, "1e-7"), ("gram", "gram")])
def test_format_number(value, text):
    assert format_number(value) == text


def test_layer_grid_puts_layer_types_in_columns_and_depths_in_rows(runs_dir, cat):
    fig = figures.layer_grid_figure(load_runs(_inversion_records(runs_dir)))
    axes = np.array(fig.axes).reshape(2, 4)  # at most two layers of a type -> two rows; the target first
    target, axes = axes[:, 0], axes[:, 1:]
    assert [ax.get_title() for ax in axes[0]] == ["conv", "relu", "pool"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["depth 1", "depth 2"]
    # The first column is the target: the content image as the runs saw it (their size), then nothing.
    h, w = json.loads(_inversion_records(runs_dir)[0].read_text())["image_size"]
    assert target[0].get_title().startswith("content image") and f"{w}x{h} px" in target[0].get_title()
    expected = np.asarray(Image.open(cat).convert("RGB").resize((w, h), Image.BILINEAR))
    assert np.array_equal(np.asarray(target[0].images[0].get_array()), expected)
    assert len(target[1].images) == 0

    def label(ax):
        return ax.texts[0].get_text() if ax.texts else None

    assert [label(ax) for ax in axes[0]] == ["conv_1 (conv1_1)", "relu_1 (relu1_1)", "pool_2 (pool1)"]
    # relu3_1 was given by its canonical name; it lands in the relu column all the same.
    assert [label(ax) for ax in axes[1]] == ["conv_3 (conv2_1)", "relu_5 (relu3_1)", None]
    assert len(axes[1, 2].images) == 0 and all(len(ax.images) == 1 for ax in axes[0])


def test_step_grid_has_a_row_per_run_and_a_column_per_step(runs_dir):
    fig = figures.step_grid_figure(load_runs(_transfer_records(runs_dir)))
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == ["2 steps", "4 steps"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["Gram\nstyle weight 1e6", "MeanVar\nstyle weight 10"]
    # Each cell shows that run's image at that step, not another one.
    shown = axes[1, 0].images[0].get_array()
    saved = np.asarray(Image.open(runs_dir / "transfer" / "meanvar_w10_s2.png").convert("RGB"))
    assert np.array_equal(np.asarray(shown), saved)


def test_loss_curves_are_on_a_log_scale_with_a_line_per_run(runs_dir):
    fig = figures.loss_curves_figure(load_runs(_transfer_records(runs_dir)))
    assert [ax.get_title() for ax in fig.axes] == ["weighted total loss", "content loss (unweighted)",
                                                   "style loss (unweighted, sum over layers)"]
    assert all(ax.get_yscale() == "log" and len(ax.lines) == 2 for ax in fig.axes)
    total = json.loads((runs_dir / "transfer" / "gram_w1e6.json").read_text())["history"]["total"]
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), total)

    fig = figures.loss_curves_figure(load_runs(_inversion_records(runs_dir)))
    assert len(fig.axes) == 2 and all(len(ax.lines) == len(LAYERS) for ax in fig.axes)
    assert all(line.get_ydata()[0] == pytest.approx(1.0) for line in fig.axes[1].lines)  # relative to the start


def test_write_figure_is_a_png_and_the_same_bytes_each_time(runs_dir, tmp_path):
    a = figures.write_figure("layer-grid", _inversion_records(runs_dir), tmp_path / "a.png")
    b = figures.write_figure("layer-grid", _inversion_records(runs_dir), tmp_path / "sub" / "b.png")
    assert a.read_bytes() == b.read_bytes()
    with Image.open(a) as img:
        assert img.format == "PNG" and img.width > 300


def test_figure_cli_errors_are_one_line(runs_dir, run_cli, tmp_path):
    code, _, err = run_cli("figure", "curves", tmp_path / "missing.json", "--out", tmp_path / "x.png")
    assert code == 2 and err.strip().count("\n") == 0
    assert "stylelab: error: record" in err and "missing.json not found" in err
    mixed = [_inversion_records(runs_dir)[0], _transfer_records(runs_dir)[0]]
    code, _, err = run_cli("figure", "layer-grid", *mixed, "--out", tmp_path / "x.png")
    assert code == 2 and "one kind" in err and "inversion, transfer" in err
    assert not (tmp_path / "x.png").exists()


def test_figure_cli_reports_a_missing_image(runs_dir, run_cli, tmp_path):
    copy = tmp_path / "inversion"
    shutil.copytree(runs_dir / "inversion", copy)
    (copy / "pool_2.png").unlink()
    code, _, err = run_cli("figure", "layer-grid", *sorted(copy.glob("*.json")), "--out", tmp_path / "x.png")
    assert code == 2 and "pool_2.png" in err and not (tmp_path / "x.png").exists()


def _manifest(tmp_path, sections, benchmarks=None):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"sections": sections, "benchmarks": benchmarks or {}, "config": {"size": 32}}))
    return path


def test_report_has_a_section_per_experiment_with_embedded_figures_tables_and_findings(runs_dir, run_cli, tmp_path):
    grid = figures.write_figure("layer-grid", _inversion_records(runs_dir), tmp_path / "inversion_grid.png")
    steps = figures.write_figure("step-grid", _transfer_records(runs_dir), tmp_path / "transfer_grid.png")
    manifest = _manifest(tmp_path, [
        {"id": "inversion", "figures": [str(grid)], "records": list(map(str, _inversion_records(runs_dir)))},
        {"id": "transfer", "figures": [str(steps)], "records": list(map(str, _transfer_records(runs_dir)))}])
    out = tmp_path / "report" / "report.html"
    code, _, err = run_cli("report", "--manifest", manifest, "--html", out)
    assert code == 0, err
    html = out.read_text()
    assert html.count("<section id=") == 3 and 'id="inversion"' in html and 'id="transfer"' in html
    assert 'id="provenance"' in html  # the appendix
    assert len(re.findall(r'<img src="data:image/(?:png|jpeg);base64,', html)) == 2  # self-contained
    assert str(tmp_path) not in html
    for label in ("conv_1 (conv1_1)", "relu_5 (relu3_1)", "Gram, style weight 1e6", "MeanVar, style weight 10"):
        assert f"<td>{label}</td>" in html
    assert "font:" in html and "&#34;" not in html.split("</style>")[0]  # CSS inline and not escaped
    # The metrics table: one row per saved image (two runs x steps 2 and 4), with numbers from the records.
    record = json.loads(_transfer_records(runs_dir)[0].read_text())
    gram_at_4 = record["images"]["4"]["distances"]["gram"]
    assert f"<td>{analysis.g(gram_at_4)}</td>" in html
    assert html.count("<td>Gram, style weight 1e6</td><td>2</td>") == 1
    assert "What the numbers show" in html and "pixel RMSE" in html


def test_report_escapes_what_records_say(runs_dir, tmp_path):
    record_path = tmp_path / "conv_1.json"
    record = json.loads((runs_dir / "inversion" / "conv_1.json").read_text())
    record["settings"]["content"] = "<script>alert(1)</script>.png"
    record_path.write_text(json.dumps(record))
    shutil.copy(runs_dir / "inversion" / "conv_1.png", tmp_path / "conv_1.png")
    grid = figures.write_figure("layer-grid", [runs_dir / "inversion" / "conv_1.json"], tmp_path / "grid.png")
    section = {"id": "inversion", "figures": [str(grid)], "records": [str(record_path)]}
    html = report.render_html({"sections": [section]})
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.png" in html


def test_report_refuses_records_of_another_kind_in_a_section(runs_dir, run_cli, tmp_path):
    grid = figures.write_figure("layer-grid", _inversion_records(runs_dir), tmp_path / "grid.png")
    records = list(map(str, _inversion_records(runs_dir) + _transfer_records(runs_dir)))
    manifest = _manifest(tmp_path, [{"id": "inversion", "figures": [str(grid)], "records": records}])
    code, _, err = run_cli("report", "--manifest", manifest, "--html", tmp_path / "r.html")
    assert code == 2 and "kind inversion" in err and "gram_w1e6.json" in err and not (tmp_path / "r.html").exists()


def test_report_manifest_mistakes_are_one_clear_message(run_cli, tmp_path):
    code, _, err = run_cli("report", "--manifest", tmp_path / "missing.json", "--html", tmp_path / "r.html")
    assert code == 2 and "missing.json" in err
    code, _, err = run_cli("report", "--manifest", "{not json", "--html", tmp_path / "r.html")
    assert code == 2 and "not valid JSON" in err
    manifest = _manifest(tmp_path, [{"id": "appendix", "figures": [], "records": []}])
    code, _, err = run_cli("report", "--manifest", manifest, "--html", tmp_path / "r.html")
    assert code == 2 and "unknown report section 'appendix'" in err and "inversion" in err
    assert not (tmp_path / "r.html").exists()


def test_report_renders_from_a_folder_without_the_report_files(runs_dir, run_cli, tmp_path, monkeypatch):
    """An installed stylelab renders a report from anywhere: its template and style sheet are package data."""
    grid = figures.write_figure("layer-grid", _inversion_records(runs_dir), tmp_path / "inversion_grid.png")
    manifest = {"sections": [{"id": "inversion", "figures": [str(grid)],
                              "records": list(map(str, _inversion_records(runs_dir)))}]}
    monkeypatch.chdir(tmp_path)
    assert not Path("report").exists()
    html_path, = report.write_report(manifest, tmp_path / "api" / "report.html")
    code, _, err = run_cli("report", "--manifest", json.dumps(manifest), "--html", tmp_path / "cli" / "report.html")
    assert code == 0, err
    for html in (html_path.read_text(), (tmp_path / "cli" / "report.html").read_text()):
        assert 'id="inversion"' in html and 'id="provenance"' in html and "<td>conv_1 (conv1_1)</td>" in html
        assert (ROOT / "src/stylelab/report/style.css").read_text().strip() in html  # the project's style sheet, inline


def test_the_report_files_are_package_data():
    """The template and style sheet install with stylelab.report: pyproject.toml's package data names them."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["stylelab.report"]
    folder = ROOT / "src/stylelab/report"
    shipped = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.suffix != ".py"
               and "__pycache__" not in p.parts}
    assert shipped and shipped == {str(p.relative_to(folder)) for pattern in patterns for p in folder.glob(pattern)}
    packaged = importlib.resources.files("stylelab.report")
    assert packaged.joinpath("templates", "report.html.j2").is_file() and packaged.joinpath("style.css").is_file()


def test_what_was_run_shows_the_settings_of_the_config_section(runs_dir, monkeypatch):
    from stylelab.spec import config

    shared, differ = report._settings_table("inversion", load_runs(_inversion_records(runs_dir)))
    assert "style" not in shared and "style layers" not in shared and differ == ["content layers"]
    transfers = load_runs(_transfer_records(runs_dir))
    shared, differ = report._settings_table("transfer", transfers)
    assert shared["content weight"] == "1" and shared["tv weight"] == "0" and "record every" not in shared
    assert differ == ["style loss", "style weight"]
    # A setting added to a config section appears in its table, with no change to the report's code.
    monkeypatch.setitem(config.SECTION_SETTINGS, "transfer", config.SECTION_SETTINGS["transfer"] + ("record_every",))
    assert report._settings_table("transfer", transfers)[0]["record every"] == "1"


def test_cost_table_reads_snakemake_benchmark_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for name, seconds, rss in (("a", 12.5, 800.0), ("b", 3.0, "NA")):
        (tmp_path / "part1").mkdir(exist_ok=True)
        (tmp_path / "part1" / f"{name}.tsv").write_text(
            header + f"{seconds}\t0:00:12\t{rss}\t1\t1\t1\t0\t0\t50\t11.0\n")
    table = provenance.cost_table({"Part 1": [tmp_path / "part1/a.tsv", tmp_path / "part1/b.tsv"]}, tmp_path)
    assert [job.job for job in table["slowest"]] == ["part1/a", "part1/b"]
    assert table["totals"] == [{"part": "Part 1", "jobs": 2, "wall_s": 15.5, "max_rss_mb": 800.0}]
    (tmp_path / "bad.tsv").write_text("not a benchmark\n")
    with pytest.raises(StylelabError, match="not a Snakemake benchmark file"):
        provenance.cost_table({"Part 1": [tmp_path / "bad.tsv"]}, tmp_path)


def test_git_state_outside_a_checkout_says_so(tmp_path):
    state = provenance.git_state(tmp_path)
    assert state["commit"] is None and "not a git checkout" in state["note"]


@pytest.mark.parametrize("before, after, words", [(10.0, 5.0, "lowered by 50%"), (10.0, 12.0, "raised by 20%"),
                                                  (10.0, 10.01, "left practically unchanged")])
def test_findings_describe_the_direction_the_numbers_go(before, after, words):
    assert analysis._change_words(before, after) == words


@pytest.fixture(scope="module")
def generations(tmp_path_factory, picasso, stand_in):
    """Two tiny generations (unguided and Gram-guided) from the embedded SD, written as `generate` does."""
    from stylelab.diffusion.guidance import sample
    from stylelab.spec.settings import GuidanceSettings
    from stylelab.engine.images import save_png
    from stylelab.spec.records import write_record

    out = tmp_path_factory.mktemp("generated")
    model = stand_in("embedded-sd")
    paths = []
    for name, factor in (("unguided", 0.0), ("gram", 0.6)):
        image, record = sample(model, GuidanceSettings(prompt="a <b>cat</b>", steps=3, size=32, style=str(picasso),
                                                       guidance_factor=factor), device="cpu", progress=False)
        save_png(image, out / name / "image.png")
        write_record(out / name / "record.json", record)
        paths.append(out / name / "record.json")
    return paths


def test_gallery_and_guidance_curves_carry_the_stand_in_banner(generations, runs_dir, tmp_path):
    gallery = figures.gallery_figure(load_runs([*generations, runs_dir / "transfer" / "gram_w1e6.json"]))
    texts = [t.get_text() for t in gallery.texts] + [ax.get_title() for ax in gallery.axes]
    assert any("Stand-in model with random weights" in t for t in texts)
    assert "style image" in texts and any(t.startswith("Gram-guided, s = 0.6, 3 steps") for t in texts)
    assert any(t.startswith("Part 1 transfer, 4 steps") for t in texts)
    curves = figures.guidance_curves_figure(load_runs(generations))
    assert [ax.get_yscale() for ax in curves.axes[:2]] == ["log", "log"]
    assert len(curves.axes[0].lines) == 2 and len(curves.axes[1].lines) == 2


def test_a_long_stand_in_reason_wraps_inside_the_figure(generations):
    runs = load_runs(generations)
    for run in runs:  # as long as the reason a real load error gives (over 200 characters)
        run.record.model.fallback_reason = ("'CompVis/stable-diffusion-v1-4' could not be loaded (OSError: "
                                                  "CompVis/stable-diffusion-v1-4 does not appear to have a file "
                                                  "named config.json.); embedded-sd used instead " * 2)
    fig = figures.gallery_figure(runs)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    banner = next(t for t in fig.texts if t.get_text().startswith("Stand-in model"))
    assert banner.get_text().count("\n") >= 2
    box = banner.get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox)

    # The curves' legend, with a long prompt, stays inside the figure and clear of the title and the banner.
    runs[1].record.settings.prompt = "A picture of a cat with the style of Picasso, " * 3
    curves = figures.guidance_curves_figure(runs)
    renderer = FigureCanvasAgg(curves).get_renderer()
    curves.draw(renderer)
    legend = curves.legends[0].get_window_extent(renderer)
    assert 0 <= legend.x0 and legend.x1 <= curves.bbox.width and 0 <= legend.y0 and legend.y1 <= curves.bbox.height
    for text in curves.texts:  # the title and the banner
        assert not legend.overlaps(text.get_window_extent(renderer)), text.get_text()[:40]


def test_report_generation_section_has_banner_escapes_the_prompt_and_compares_with_unguided(generations, tmp_path):
    grid = figures.write_figure("gallery", generations, tmp_path / "generation_grid.png")
    html = report.render_html({"sections": [{"id": "guidance", "figures": [str(grid)],
                                             "records": list(map(str, generations))}]})
    assert 'class="banner"' in html and "embedded-sd asked for by name" in html
    assert html.count('class="banner small"') == 1  # above the one figure, as well as at the top
    assert "a &lt;b&gt;cat&lt;/b&gt;" in html and "<b>cat</b>" not in html
    assert html.count("<td>unguided, 3 steps") == 2  # metrics table and runs table
    unguided, guided = (json.loads(p.read_text())["style_distances"]["gram"] for p in generations)
    assert f"({analysis.g(unguided)} to {analysis.g(guided)})" in html  # the finding quotes both numbers


def test_the_appendix_names_the_model_its_commit_its_checksums_and_an_unpinned_revision(generations, tmp_path):
    from stylelab.spec.records import read_record, write_record

    commit, files = "a" * 40, [{"path": "unet/diffusion_pytorch_model.fp16.safetensors", "size": 1_719_125_304,
                                "sha256": "b" * 64}]
    paths = []
    for path in generations:
        record = read_record(path)
        record.model.embedded, record.model.fallback_reason = False, None
        record.model.name = record.model.source = "CompVis/stable-diffusion-v1-4"
        record.model.revision, record.model.commit, record.model.files = "main", commit, files
        write_record(tmp_path / path.parent.name / "record.json", record)
        (tmp_path / path.parent.name / "image.png").write_bytes((path.parent / "image.png").read_bytes())
        paths.append(tmp_path / path.parent.name / "record.json")
    html = report.render_html({"sections": [{"id": "guidance", "figures": [], "records": list(map(str, paths))}]})
    assert html.count("<th>diffusion model</th>") == 1  # both generations: one model
    assert f"CompVis/stable-diffusion-v1-4, commit <code>{commit}</code>: <strong>not pinned</strong>" in html
    assert "revision main" in html and "sha256 " + "b" * 64 in html and "1.72 GB" in html
    assert 'class="banner"' not in html


@pytest.mark.parametrize("errors, verdict", [
    ({"conv_1": 0.01, "relu_1": 0.02, "conv_10": 0.2, "relu_10": 0.21}, "depth, more than the type of layer"),
    ({"conv_1": 0.01, "relu_1": 0.3, "conv_10": 0.1, "relu_10": 0.35}, "the type of layer matters as much"),
])
def test_the_depth_or_type_sentence_follows_the_numbers(errors, verdict, monkeypatch):
    from stylelab.spec.records import Timing, TransferRecord
    from stylelab.report.runs import Run

    def record(layer):
        return TransferRecord(kind="inversion", settings=TransferSettings(content_layers=[layer]), image_size=[32, 32],
                              history={}, images={}, timing=Timing(1, 0.0))

    runs = [Run(Path(f"{layer}.json"), record(layer)) for layer in errors]
    monkeypatch.setattr(analysis, "pixel_rmse", lambda run: errors[run.layer])
    _, text = analysis.inversion_findings(runs)
    sentence = next(t for t in text if t.startswith("At the same depth"))
    assert verdict in sentence, sentence


# ------------------------------------------------------------- the inputs, shown beside what was made of them


def test_inputs_figure_shows_each_image_the_records_name_once(runs_dir, cat, picasso):
    both = figures.inputs_figure(load_runs(_inversion_records(runs_dir) + _transfer_records(runs_dir)))
    titles = [ax.get_title() for ax in both.axes]
    assert titles == [f"content image\ncat.png\n451x300 px", f"style image\n{picasso.name}\n468x600 px"]
    assert np.array_equal(np.asarray(both.axes[0].images[0].get_array()), np.asarray(Image.open(cat).convert("RGB")))
    # Inversions alone name no style image: the figure shows the content image only.
    alone = figures.inputs_figure(load_runs(_inversion_records(runs_dir)))
    assert [ax.get_title().split("\n")[0] for ax in alone.axes] == ["content image"]


def test_texture_grid_shows_the_style_image_first_and_copes_without_one(tmp_path, tiny_settings, runs_dir):
    settings = tiny_settings(content=None, style_layers=["conv_1"], content_layers=[], content_weight=0,
                             init="noise", steps=(2,))
    write_outputs(run_transfer(settings, progress=False), tmp_path, "conv_1.png", "conv_1.json")
    runs = load_runs([tmp_path / "conv_1.json"])
    if runs[0].kind != "texture":  # how the CLI names a style-only run
        runs[0].record.kind = "texture"
    fig = figures.layer_grid_figure(runs)
    assert fig.axes[0].get_title().startswith("style image") and len(fig.axes) == 2
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert min(shown.shape[:2]) == min(runs[0].record.image_size)  # at the runs' short side, its aspect kept
    assert [ax.get_title().split("\n")[0] for ax in figures.inputs_figure(runs).axes] == ["style image"]
    # A record whose image is gone: one clear error naming it.
    runs[0].record.settings.style = str(tmp_path / "gone.jpg")
    with pytest.raises(StylelabError, match="style image .*gone.jpg"):
        figures.layer_grid_figure(runs)


def test_comparison_marks_the_generated_image_the_transfers_started_from(generations, tiny_settings, tmp_path):
    content = generations[0].parent / "image.png"  # the unguided sample
    settings = tiny_settings(content=str(content), steps=(2,))
    write_outputs(run_transfer(settings, progress=False), tmp_path, "gram_s{step}.png", "gram.json")
    titles = [ax.get_title() for ax in figures.gallery_figure(load_runs([*generations, tmp_path / "gram.json"])).axes]
    marked = [t for t in titles if t.startswith("content of the Part 1 transfers")]
    assert len(marked) == 1 and "unguided, 3 steps" in marked[0]
    # Without the generation among the gallery's runs, its image is added as a cell of its own.
    titles = [ax.get_title() for ax in figures.gallery_figure(load_runs([generations[1], tmp_path / "gram.json"])).axes]
    assert titles[2] == "content of the Part 1 transfers\nunguided/image.png"
    assert titles[3].startswith("Part 1 transfer")


# ------------------------------------------------------------- labels, findings and commits in the report


def _prompted_copy(generation: Path, folder: Path, prompt: str) -> Path:
    """A copy of an unguided generation, as if made with another prompt (its own folder, as the workflow's)."""
    record = json.loads(generation.read_text())
    record["settings"]["prompt"] = prompt
    record["style_distances"] = {k: v * 0.9 for k, v in record["style_distances"].items()}
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record))
    shutil.copy(generation.parent / "image.png", folder / "image.png")
    return folder / "record.json"


def test_unguided_runs_of_two_prompts_have_distinct_labels_and_no_finding_is_printed_twice(generations, tmp_path):
    prompted = _prompted_copy(generations[0], tmp_path / "style_in_prompt", "a cat in the style of Picasso")
    records = [*map(str, generations), str(prompted)]
    labels = [run.label for run in load_runs(records)]
    assert labels == ["unguided, 3 steps", "Gram-guided, s = 0.6, 3 steps (gram)",
                      "unguided, 3 steps (style_in_prompt)"]
    html = report.render_html({"sections": [{"id": "guidance", "figures": [], "records": records},
                                            {"id": "prompt", "figures": [], "records": records}]})
    findings = re.findall(r"<li>(.*?)</li>", html, flags=re.S)
    guidance, prompt = (re.findall(r"<li>(.*?)</li>", part, flags=re.S) for part in html.split('id="prompt"'))
    assert any("against the unguided sample" in line for line in guidance)
    assert any("Naming the style in the prompt" in line for line in prompt)
    assert not any("against the unguided sample" in line for line in prompt)
    assert not any("Naming the style in the prompt" in line for line in guidance)
    assert len(findings) == len(set(findings)), [f for f in findings if findings.count(f) > 1]
    rows = re.findall(r"<tr><td>(unguided, 3 steps[^<]*)<", html)
    assert "unguided, 3 steps (style_in_prompt)" in rows and "unguided, 3 steps" in rows


def test_records_note_their_commit_and_the_title_page_names_results_and_report_commits(runs_dir, tmp_path,
                                                                                      monkeypatch):
    # A record written in a checkout notes its commit; the tests run in this project's checkout.
    noted = json.loads(_inversion_records(runs_dir)[0].read_text())["versions"].get(provenance.COMMIT)
    state = provenance.git_state()
    if state["commit"]:
        assert noted.removesuffix(provenance.DIRTY) == state["commit"]
    paths = []
    for i, path in enumerate(_inversion_records(runs_dir)):
        record = json.loads(path.read_text())
        record["versions"][provenance.COMMIT] = ("a" if i < 3 else "b") * 40 + (provenance.DIRTY if i >= 3 else "")
        copy = tmp_path / path.name
        copy.write_text(json.dumps(record))
        shutil.copy(path.with_suffix(".png"), copy.with_suffix(".png"))
        paths.append(str(copy))
    manifest = {"sections": [{"id": "inversion", "figures": [], "records": paths}]}
    monkeypatch.setattr(provenance, "git_state", lambda where=".": {"commit": "c" * 40, "dirty": False, "note": ""})
    title = report.render_html(manifest).split("</header>")[0]
    assert (f"<dt>Results</dt><dd>computed at commit <code>{'a' * 12}</code> (3 records); commit <code>{'b' * 12}"
            f"</code> with uncommitted changes (2 records)</dd>") in title
    assert f"<dt>Report</dt><dd>rendered at commit <code>{'c' * 12}</code></dd>" in title
    # One commit for all, the report's own: named once.
    monkeypatch.setattr(provenance, "git_state", lambda where=".": {"commit": "a" * 40, "dirty": False, "note": ""})
    title = report.render_html({"sections": [{"id": "inversion", "figures": [], "records": paths[:3]}]})
    title = title.split("</header>")[0]
    assert f"commit <code>{'a' * 12}</code>, for the results and this report" in title
    assert "<dt>Report</dt>" not in title


# ------------------------------------------------------------- what the report embeds


def test_photographic_figures_are_embedded_as_jpeg_and_line_plots_as_crisp_png(runs_dir, tmp_path, picasso):
    from matplotlib.figure import Figure

    # A grid of detailed images, as the default run's figures are (upsampled, smooth): JPEG, far smaller.
    style = np.asarray(Image.open(picasso).convert("RGB").resize((128, 164), Image.BILINEAR))
    fig = Figure(figsize=(7.8, 4.2), layout="constrained")
    for ax in fig.subplots(1, 3):
        ax.imshow(style, interpolation="antialiased")
    photo = figures._save(fig, tmp_path / "texture_grid.png")
    mime, data = report.embedded_image(photo, photographic=True)
    assert mime == "image/jpeg" and len(data) < 0.5 * photo.stat().st_size
    with Image.open(photo) as img:
        drawn = img.convert("RGB")
    assert drawn.width > report.EMBED_WIDTH  # so it goes in at the HTML column's width, its aspect kept
    size = (report.EMBED_WIDTH, round(drawn.height * report.EMBED_WIDTH / drawn.width))
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGB" and img.size == size
        assert img.layer is not None and [layer[1:3] for layer in img.layer] == [(1, 1)] * 3  # no chroma subsampling
        decoded = np.asarray(img).astype(float)
    # Against the figure as a browser shows it in that column: PSNR well above what a reader sees.
    shown = np.asarray(drawn.resize(size, Image.LANCZOS)).astype(float)
    assert 10 * np.log10(255 ** 2 / np.mean((decoded - shown) ** 2)) > 36
    # A figure narrower than the column keeps its size.
    narrow = figures._save(Figure(figsize=(4, 2)), tmp_path / "inputs.png")
    with Image.open(io.BytesIO(report.embedded_image(narrow, photographic=True)[1])) as img:
        assert img.size == Image.open(narrow).size

    # A line plot stays PNG, without alpha, each pixel within a few levels of the figure's.
    curves = figures.write_figure("curves", _transfer_records(runs_dir), tmp_path / "transfer_curves.png")
    mime, data = report.embedded_image(curves, photographic=False)
    assert mime == "image/png" and len(data) < 0.6 * curves.stat().st_size
    with Image.open(io.BytesIO(data)) as img:
        assert "A" not in img.mode
        shown = np.asarray(img.convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(curves).convert("RGB")).astype(int)
    assert (np.abs(shown - drawn).max(axis=2) > 16).mean() < 0.01

    # Which figures are photographic is declared with each (stylelab.report.contents): grids and galleries.
    photos = {figure.name for figure in contents.FIGURES if figure.photo}
    assert photos >= {"inversion_grid", "texture_grid", "comparison", "inputs"}
    assert not any(name.endswith("curves") for name in photos)


# ------------------------------------------------------------------------------------------------ Part 3


@pytest.fixture(scope="module")
def part3_dir(tmp_path_factory, tiny_settings, picasso, starry):
    """Tiny real Part 3 runs (colour modes, one scale and coarse to fine, a blend), written as the workflow
    writes them: one final image and record per run."""
    out = tmp_path_factory.mktemp("part3")
    runs = {"colour": {f"{mode}_gram": dict(preserve_colors=mode, steps=(3,))
                       for mode in ("none", "luminance", "match")},
            "scales": {"single_scale": dict(scales=[32], size="auto", steps=(6,)),
                       "coarse_to_fine": dict(scales=[16, 32], size="auto", scale_steps=[4], steps=(3,))},
            "blend": {f"w{a}": dict(style=[str(picasso), str(starry)], style_blend=[a, 1 - a], steps=(3,))
                      for a in (1.0, 0.5, 0.0)}}
    for experiment, named in runs.items():
        for name, options in named.items():
            result = run_transfer(tiny_settings(weights="caffe", **options), progress=False)
            write_outputs(result, out / experiment, f"{name}.png", f"{name}.json")
    return out


@pytest.mark.parametrize("experiment", ["colour", "scales", "blend"])
def test_part3_figures_draw_from_their_records(part3_dir, experiment, tmp_path):
    records = sorted((part3_dir / experiment).glob("*.json"))
    fig = figures.FIGURES[experiment](load_runs(records))
    titles = [ax.get_title() for ax in fig.axes]
    if experiment == "colour":
        assert titles == ["content image", "style image", "plain transfer", "luminance only", "colours matched"]
        assert sum(len(ax.images) for ax in fig.axes) == 5  # the two inputs and the three modes
    elif experiment == "scales":
        plot = next(ax for ax in fig.axes if ax.get_yscale() == "log")
        assert len(plot.lines) == 3  # one scale, and coarse to fine's two
        assert any("16 > 32 px" in t for t in titles)
    else:
        assert titles[0].startswith("style: picasso") and titles[-1].startswith("style: starry_night")
        assert [t for t in titles if "/" in t] == ["1 / 0", "0.5 / 0.5", "0 / 1"]
    out = figures.write_figure(experiment, records, tmp_path / f"{experiment}.png")
    assert out.stat().st_size > 10_000


def test_part3_sections_in_the_report(part3_dir, run_cli, tmp_path):
    sections = []
    for experiment in ("colour", "scales", "blend"):
        records = sorted((part3_dir / experiment).glob("*.json"))
        figure = figures.write_figure(experiment, records, tmp_path / f"{experiment}.png")
        sections.append({"id": experiment, "figures": [str(figure)], "records": list(map(str, records))})
    out = tmp_path / "report.html"
    code, _, err = run_cli("report", "--manifest", _manifest(tmp_path, sections), "--html", out)
    assert code == 0, err
    html = out.read_text()
    assert "Part 3: Beyond the assignment" in html
    for title in ("Keeping the content", "Coarse to fine", "Blended styles"):
        assert title in html
    assert "Coarse to fine (16 &gt; 32 px) took" in html and "colours: luminance" in html
    assert "blend 0.5 / 0.5" in html


def test_a_two_axis_sweep_has_a_grid_cell_per_combination_and_a_line_per_second_value(runs_dir, tmp_path):
    """Columns by the first varied setting, rows by the second (a combination without a run stays empty); the
    metrics plot draws a line per value of the second; the report gives the sweep its section after Part 3."""
    records = _transfer_records(runs_dir)
    runs = load_runs(records)
    grid = figures.sweep_grid_figure(runs, ["style_loss", "style_weight"])
    axes = np.array(grid.axes).reshape(2, 3)  # the style image, then gram and meanvar; rows 1e6 and 10
    assert [ax.get_title() for ax in axes[0]] == ["style image", "style_loss = gram", "style_loss = meanvar"]
    assert [ax.get_ylabel() for ax in axes[:, 1]] == ["style_weight = 1e6", "style_weight = 10"]
    assert [bool(ax.images) for ax in axes.flat] == [True, True, False, False, False, True]
    plot = figures.sweep_metrics_figure(runs, ["style_weight", "style_loss"])
    panels = [ax for ax in plot.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["content loss", "Gram distance", "MeanVar distance"]
    assert all(len(ax.lines) == 2 for ax in panels) and panels[0].get_xscale() == "log"  # 10 to 1e6
    files = []
    for drawing in ("grid", "metrics"):
        files.append(tmp_path / f"losses_{drawing}.png")
        figures.write_figure(f"sweep-{drawing}", records, files[-1], vary=["style_loss", "style_weight"])
    manifest = {"sweeps": [{"name": "losses", "experiment": "transfer", "settings": {"steps": [2, 4]},
                            "vary": {"style_loss": ["gram", "meanvar"], "style_weight": [1e6, 10]}, "shared": [],
                            "figures": [str(f) for f in files], "records": [str(r) for r in records]}]}
    html = report.render_html(manifest)
    assert 'id="sweep-losses"' in html and "Sweeps A. losses: style transfer over style_loss and style_weight" in html
    assert "steps 2+4" in html and "style_loss = meanvar, style_weight = 10" in html
