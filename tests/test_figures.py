"""Figures and the HTML report, drawn from real (small) run records and their images."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from stylelab import figures, report, transfer
from stylelab.runs import format_number, load_runs
from stylelab.transfer import TransferSettings, run_transfer, write_outputs

LAYERS = ["conv_1", "relu_1", "pool_2", "conv_3", "relu3_1"]  # two conv, two relu (one canonical), one pool


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, cat, picasso):
    """Records and images of a few tiny real runs, written as the CLI writes them."""
    out = tmp_path_factory.mktemp("runs")
    small = dict(size=32, device="cpu", weights="caffe")
    for layer in LAYERS:
        settings = transfer.feature_inversion(str(cat), layer, steps=(3,), **small)
        write_outputs(run_transfer(settings, progress=False), out / "inversion", f"{layer}.png", f"{layer}.json")
    for loss, weight in (("gram", 1e6), ("meanvar", 10.0)):
        settings = TransferSettings(content=str(cat), style=str(picasso), style_loss=loss, style_weight=weight,
                                    steps=(2, 4), **small)
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


def test_layer_grid_puts_layer_types_in_columns_and_depths_in_rows(runs_dir):
    fig = figures.layer_grid_figure(load_runs(_inversion_records(runs_dir)))
    axes = np.array(fig.axes).reshape(2, 3)  # at most two layers of a type -> two rows
    assert [ax.get_title() for ax in axes[0]] == ["conv", "relu", "pool"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["depth 1", "depth 2"]

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


def test_report_has_a_section_per_kind_with_embedded_figures_and_run_tables(runs_dir, run_cli, tmp_path):
    grid = figures.write_figure("layer-grid", _inversion_records(runs_dir), tmp_path / "inversion_grid.png")
    steps = figures.write_figure("step-grid", _transfer_records(runs_dir), tmp_path / "transfer_grid.png")
    out = tmp_path / "report" / "report.html"
    code, _, err = run_cli("report", "--out", out, "--section", "inversion", grid, "--section", "transfer", steps,
                           "--records", *_inversion_records(runs_dir), *_transfer_records(runs_dir))
    assert code == 0, err
    html = out.read_text()
    assert html.count("<section id=") == 2 and 'id="inversion"' in html and 'id="transfer"' in html
    assert html.count("data:image/png;base64,") == 2 and str(tmp_path) not in html  # self-contained
    for label in ("conv_1 (conv1_1)", "relu_5 (relu3_1)", "Gram, style weight 1e6", "MeanVar, style weight 10"):
        assert f"<td>{label}</td>" in html
    assert "font:" in html and "&#34;" not in html.split("</style>")[0]  # CSS inline and not escaped


def test_report_escapes_what_records_say(runs_dir, tmp_path):
    record_path = tmp_path / "conv_1.json"
    record = json.loads((runs_dir / "inversion" / "conv_1.json").read_text())
    record["settings"]["content"] = "<script>alert(1)</script>.png"
    record_path.write_text(json.dumps(record))
    shutil.copy(runs_dir / "inversion" / "conv_1.png", tmp_path / "conv_1.png")
    grid = figures.write_figure("layer-grid", [record_path], tmp_path / "grid.png")
    html = report.render_report(report.build_sections([["inversion", str(grid)]], [record_path]))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.png" in html


def test_report_refuses_records_without_a_section(runs_dir, run_cli, tmp_path):
    grid = figures.write_figure("layer-grid", _inversion_records(runs_dir), tmp_path / "grid.png")
    code, _, err = run_cli("report", "--out", tmp_path / "r.html", "--section", "inversion", grid,
                           "--records", *_inversion_records(runs_dir), *_transfer_records(runs_dir))
    assert code == 2 and "transfer" in err and "--section" in err and not (tmp_path / "r.html").exists()


@pytest.fixture(scope="module")
def generations(tmp_path_factory, picasso):
    """Two tiny generations (unguided and Gram-guided) from the embedded SD, written as `generate` does."""
    from stylelab.diffusion.guidance import GuidanceSettings, sample
    from stylelab.diffusion.models import load_model
    from stylelab.images import save_png
    from stylelab.records import write_record

    out = tmp_path_factory.mktemp("generated")
    model = load_model("embedded-sd")
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


def test_report_generation_section_has_banner_and_escapes_the_prompt(generations, tmp_path):
    grid = figures.write_figure("gallery", generations, tmp_path / "generation_grid.png")
    html = report.render_report(report.build_sections([["generation", str(grid)]], generations))
    assert 'class="banner"' in html and "embedded-sd asked for by name" in html
    assert "a &lt;b&gt;cat&lt;/b&gt;" in html and "<b>cat</b>" not in html
    assert html.count("<td>unguided, 3 steps</td>") == 1
