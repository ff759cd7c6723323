"""The report: records, figures, benchmark files and the config -> Jinja templates -> HTML and PDF.

`write_report` reads a manifest (what the workflow made: per section its figures and records, the
benchmark files per part, the effective config), builds one context from it, and renders
`report.html.j2`: one self-contained HTML file (figures as data URIs, the style sheet inline), and with
WeasyPrint the same page as an A4 PDF (the print rules of the style sheet: title page, page numbers,
figures kept whole). Everything shown comes from those files; nothing is recomputed except simple
comparisons (stylelab.report.analysis).

The template and the style sheet (templates/report.html.j2 and style.css beside this module) are package
data of stylelab.report, so a report renders from any working directory; --template and --css give others.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.resources
import io
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Sequence

import jinja2
import yaml
from markupsafe import Markup
from PIL import Image

from stylelab.report import analysis, contents
from stylelab.spec import provenance
from stylelab.spec.config import NETWORK_SETTINGS, SECTION_SETTINGS, TRANSFER_RUN_SETTINGS, PART3_SETTINGS
from stylelab.spec.errors import StylelabError
from stylelab.spec.files import write_bytes_atomic
from stylelab.report.runs import STYLE_LOSS_NAMES, Run, load_runs
from stylelab.spec.settings import format_number

log = logging.getLogger("stylelab.report.render")

# The packaged template and style sheet (report/ in the source tree), used when none is given.
REPORT_FILES = "stylelab.report"
TEMPLATE_DIR, TEMPLATE_NAME = "templates", "report.html.j2"
CSS_NAME = "style.css"

# What a Part 3 section's runs set beside a transfer's settings (shown in its "what was run" table).

# The "what was run" table of a Part 1 section: the images and the layers (a section's `layers` are each
# run's content or style layers), then what its config section holds, then what the config gives every Part 1
# run (stylelab.spec.config), so a setting added to a section shows here by itself. `size` is shown as the image
# size the records measured. A setting no run has (an inversion's style image) is left out.
_PART1_INPUTS = ("content", "style", "content_layers", "style_layers")
_MEASURED = ("size",)
# The same table for Part 2 generations (fields of GuidanceSettings).
GENERATION_SETTINGS_SHOWN = ("prompt", "style", "style_layers", "seed", "cfg_scale", "size", "guidance_start",
                             "guidance_end", "guidance_every", "precision", "weights")


def settings_shown(kind: str) -> tuple[str, ...]:
    """The settings the "what was run" table of a section of this kind of record shows, in order."""
    if kind == "generation":
        return GENERATION_SETTINGS_SHOWN
    names = _PART1_INPUTS + SECTION_SETTINGS[kind] + (TRANSFER_RUN_SETTINGS + PART3_SETTINGS if kind == "transfer"
                                                      else ())
    names += tuple(name for name in NETWORK_SETTINGS if name not in _MEASURED)
    return tuple(dict.fromkeys(names))  # each once, first place kept


# How figures are embedded, so that the report can be mailed (under 3 MB at the default sizes). Figures of
# images (grids, galleries) are drawn wider than the HTML's text column (59rem = 944 px: report/style.css's
# 62rem less its padding), so they go in resampled to that width (Lanczos: what a browser shows of the full
# file anyway; in the PDF, about 150 dpi across its column) and as JPEG, quality 80 with no chroma
# subsampling (subsampling blurs the colour noise of the shallow textures, a loss one sees; at 4:4:4 and the
# column's width, crops of the texture, colour and coarse-to-fine figures side by side at 2x could not be
# told apart), unless the full-size PNG is smaller (blocky upscaled pixels of tiny previews). Line plots stay
# PNG at full size with their few colours kept (256 at most: anti-aliased edges blend a handful of line
# colours with white), crisp when zoomed and a third of the bytes. Either drops the alpha channel matplotlib
# writes (every figure is opaque). The figure files on disk stay as made.
EMBED_WIDTH = 944
JPEG_QUALITY = 80


def _encoded(img, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def embedded_image(path: Path, photographic: bool) -> tuple[str, bytes]:
    """(MIME type, bytes) of a figure as the report embeds it: made small, as the comment above says."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StylelabError(f"cannot read figure {path}: {exc.strerror}. Make the figure first.") from None
    if not data.startswith(b"\x89PNG"):
        raise StylelabError(f"figure {path} is not a PNG file; make it again.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = img.convert("RGB") if img.mode in ("RGB", "L", "P") else _on_white(img.convert("RGBA"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise StylelabError(f"figure {path} cannot be read ({exc}); make it again.") from None
    png = _encoded(rgb, "PNG", optimize=True)
    if photographic:
        if rgb.width > EMBED_WIDTH:
            rgb = rgb.resize((EMBED_WIDTH, round(rgb.height * EMBED_WIDTH / rgb.width)), Image.LANCZOS)
        jpeg = _encoded(rgb, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)
        return ("image/jpeg", jpeg) if len(jpeg) < len(png) else ("image/png", png)
    palette = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return "image/png", min(png, _encoded(palette, "PNG", optimize=True), key=len)


def _on_white(rgba):
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _data_uri(path: Path, photographic: bool = False) -> str:
    mime, data = embedded_image(path, photographic)
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(format_number, value))
    return format_number(value)


def _devices(runs: Sequence[Run]) -> list[str]:
    return provenance.unique(f"{run.record.device} ({run.record.device_name})" for run in runs)


def _settings_table(kind: str, runs: Sequence[Run]) -> tuple[dict, list[str]]:
    """(settings every run shares, names of the settings that differ between runs)."""
    shared, differ = {}, []
    for name in settings_shown(kind):
        values = [getattr(run.record.settings, name) for run in runs]
        if all(v is None or v in ([], ()) for v in values):
            continue
        if all(v == values[0] for v in values):
            shared[name.replace("_", " ")] = _shown(values[0])
        else:
            differ.append(name.replace("_", " "))
    sizes = {tuple(run.record.image_size) for run in runs}
    shared["image size"] = ", ".join(f"{w} x {h} px" for h, w in sorted(sizes))
    shared["precision"] = ", ".join(provenance.unique(run.record.precision for run in runs))
    shared["device"] = ", ".join(_devices(runs))
    return shared, differ


def _run_rows(kind: str, runs: Sequence[Run], pixel_errors: dict | None = None) -> list[dict]:
    rows = []
    for run in runs:
        record, timing = run.record, run.record.timing
        if kind == "generation":
            rows.append({"label": run.label, "prompt": record.settings.prompt,
                         "steps": f"{timing.steps} ({timing.guided_steps} guided)",
                         "time_per_step_s": float(timing.time_per_step_s),
                         "model": record.model.source + (" (stand-in)" if run.stand_in else "")})
            continue
        row = {"label": run.label, "steps": ", ".join(map(str, run.steps)),
               "initial_loss": float(record.initial_loss), "final_loss": float(record.final_losses["total"]),
               "time_per_step_s": float(timing.time_per_step_s), "optimise_s": float(timing.loop_s)}
        if pixel_errors is not None:
            row["pixel_rmse"] = pixel_errors.get(run.layer)
        rows.append(row)
    return rows


def _metrics(runs: Sequence[Run], prefix: str = "") -> list[dict]:
    return [{"label": prefix + m.label, "step": m.step, "content": m.content, "gram": m.gram,
             "meanvar": m.meanvar, "stand_in": m.stand_in}
            for run in runs for m in analysis.image_metrics(run)]


def _figure(path: Path, stand_in: str | None = None) -> dict:
    declared = contents.figure(path.stem)
    return {"name": path.stem, "caption": declared.caption if declared else path.stem.replace("_", " "),
            "src": _data_uri(path, bool(declared and declared.photo)), "stand_in": stand_in}


def build_section(spec: dict) -> dict:
    """One section's context from its manifest entry: figures, settings, runs, metrics and findings."""
    section_id = spec["id"]
    meta = {k: v for k, v in dataclasses.asdict(contents.section(section_id)).items() if k not in ("records", "transfers")}
    runs = load_runs(spec["records"])
    wrong = sorted({run.kind for run in runs} - {meta["kind"]})
    if wrong:
        raise StylelabError(f"section '{section_id}' shows records of kind {meta['kind']}, but got {', '.join(wrong)} "
                            f"({', '.join(str(run.path) for run in runs if run.kind != meta['kind'])}).")
    transfers = load_runs(spec["transfers"]) if spec.get("transfers") else []
    stand_ins = provenance.unique(run.stand_in for run in runs if run.stand_in)
    stand_in = "; ".join(stand_ins) or None
    settings, differ = _settings_table(meta["kind"], runs)
    context = {"id": section_id, **meta, "settings": settings, "differ": differ, "stand_in": stand_in,
               "figures": [_figure(Path(f), stand_in) for f in spec["figures"]], "metrics": [], "findings": []}
    if section_id == "inversion":
        errors, context["findings"] = analysis.inversion_findings(runs)
        context["runs"] = _run_rows("inversion", runs, errors)
    elif section_id == "texture":
        context["runs"] = _run_rows("texture", runs)
        context["findings"] = analysis.texture_findings(runs)
    elif meta["part"] == "Part 3":
        context["runs"] = _run_rows("transfer", runs)
        context["findings"] = {"colour": analysis.colour_findings, "scales": analysis.scales_findings,
                               "blend": analysis.blend_findings}[section_id](runs)
    elif section_id == "transfer":
        context["runs"] = _run_rows("transfer", runs)
        context["metrics"] = _metrics(runs)
        context["findings"] = analysis.transfer_findings(runs)
    else:
        context["runs"] = _run_rows("generation", runs)
        context["metrics"] = _metrics(runs) + _metrics(transfers, prefix="Part 1 transfer on the unguided sample: ")
        context["findings"] = (analysis.guidance_findings(runs, transfers) if section_id == "guidance"
                               else analysis.prompt_findings(runs))
        if transfers:
            context["transfer_settings"] = _settings_table("transfer", transfers)[0]
    context["n_runs"] = len(runs) + len(transfers)
    context["records"] = runs + transfers
    return context


def _packages(versions: dict) -> dict:
    """A record's versions without the code's commit, which the report shows by itself."""
    return {name: v for name, v in versions.items() if name != provenance.COMMIT}


def _provenance(config: dict, all_runs: Sequence[Run], costs: dict) -> dict:
    versions = _packages(all_runs[0].record.versions) if all_runs else {}
    report_versions = _packages(provenance.package_versions())
    git = provenance.git_state()
    results = provenance.result_commits(run.record.versions for run in all_runs)
    return {
        "date": provenance.now_utc(),
        "git": git,
        # The commits that computed the results (each with how many records), and whether the report was
        # rendered from another one: then the title page names both.
        "results": results,
        "same_commit": git["commit"] is not None and [(r["commit"], r["dirty"]) for r in results]
                       == [(git["commit"], bool(git["dirty"]))],
        "versions": versions or report_versions,
        "versions_differ": sorted({name for run in all_runs for name, v in _packages(run.record.versions).items()
                                   if versions.get(name) != v}),
        "devices": _devices(all_runs),
        "precisions": provenance.unique(run.record.precision for run in all_runs),
        "weights": provenance.unique(run.record.weights for run in all_runs),
        "seeds": provenance.unique(run.record.seed for run in all_runs),
        "models": _models(all_runs),
        "host": platform.node(),
        "config_yaml": yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100) if config else "",
        "costs": costs,
    }


def _models(runs: Sequence[Run]) -> list[dict]:
    """The diffusion models the generations sampled from, each once: what was asked, what was loaded, its
    commit and whether the config pinned it, and each file's checksum (from the model manifest)."""
    found = {}
    for run in runs:
        model = getattr(run.record, "model", None)
        if model is None:
            continue
        key = (model.name, model.source, model.commit)
        found.setdefault(key, {"name": model.name, "kind": model.kind, "source": model.source,
                               "embedded": model.embedded, "revision": model.revision, "commit": model.commit,
                               "pinned": model.pinned,
                               "files": [{**f, "shown_size": _bytes(f["size"])} for f in model.files]})
    return list(found.values())


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def build_context(manifest: dict, css: str) -> dict:
    sections = [build_section(spec) for spec in manifest.get("sections", [])]
    if not sections:
        raise StylelabError("the report manifest lists no sections.")
    seen, all_runs = set(), []
    for section in sections:
        for run in section.pop("records"):
            if run.path not in seen:
                seen.add(run.path)
                all_runs.append(run)
    costs = provenance.cost_table(manifest.get("benchmarks", {}), manifest.get("root", "."))
    stand_ins = provenance.unique(s["stand_in"] for s in sections if s["stand_in"])
    intros = {part: [_figure(Path(f)) for f in figures] for part, figures in manifest.get("intro", {}).items()}
    return {
        "title": manifest.get("title", "Neural style experiments"),
        "sections": sections,
        "intros": intros,
        "parts": provenance.unique(s["part"] for s in sections),
        "part_titles": contents.PARTS,
        "stand_ins": stand_ins,
        "n_records": len(all_runs),
        "n_figures": sum(len(s["figures"]) for s in sections) + sum(map(len, intros.values())),
        "provenance": _provenance(manifest.get("config", {}), all_runs, costs),
        "css": Markup(css),  # our own file, read as is: escaping would break the CSS inside <style>
        "loss_names": STYLE_LOSS_NAMES,
    }


def _given(path: str | os.PathLike, what: str, option: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise StylelabError(f"report {what} {path} not found; give {option} PATH, or leave {option} out to use "
                            "the one installed with stylelab.")
    return path


def _packaged(*parts: str):
    """A file of the packaged report files (an importlib.resources Traversable)."""
    try:
        resource = importlib.resources.files(REPORT_FILES).joinpath(*parts)
    except ModuleNotFoundError:
        resource = None
    if resource is None or not resource.is_file():
        raise StylelabError(f"the report file {'/'.join(parts)} installed with stylelab ({REPORT_FILES}) is "
                            "missing; reinstall stylelab (pip install .), or give --template and --css.")
    return resource


def _style_sheet(css: str | os.PathLike | None) -> str:
    if css is None:
        return _packaged(CSS_NAME).read_text(encoding="utf-8")
    return _given(css, "style sheet", "--css").read_text(encoding="utf-8")


def _environment(template: str | os.PathLike | None) -> tuple[jinja2.Environment, str]:
    """The Jinja environment that loads the template, and the template's name in it."""
    if template is None:
        _packaged(TEMPLATE_DIR, TEMPLATE_NAME)
        loader, name = jinja2.PackageLoader(REPORT_FILES, TEMPLATE_DIR), TEMPLATE_NAME
    else:
        path = _given(template, "template", "--template")
        loader, name = jinja2.FileSystemLoader(str(path.parent)), path.name
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["g"] = analysis.g
    env.filters["num"] = format_number
    return env, name


def render_html(manifest: dict, template: str | os.PathLike | None = None, css: str | os.PathLike | None = None) -> str:
    """The report as one HTML page. `template` and `css` are files; None means the ones installed with stylelab."""
    env, name = _environment(template)
    context = build_context(manifest, _style_sheet(css))
    return env.get_template(name).render(**context)


def render_pdf(html: str) -> bytes:
    """The HTML as an A4 PDF (WeasyPrint; the @page and print rules are in the style sheet)."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        raise StylelabError(f"WeasyPrint cannot start ({exc}). It needs the Debian libraries libpango-1.0-0 "
                            "libpangoft2-1.0-0 libharfbuzz-subset0: run `make env` as root, or install them "
                            "with apt-get.") from None
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    return weasyprint.HTML(string=html, base_url=".").write_pdf()


def read_manifest(text_or_path: str) -> dict:
    """A manifest given inline (JSON text, as the workflow passes it) or as a JSON file."""
    text = text_or_path
    if not text_or_path.lstrip().startswith("{"):
        try:
            text = Path(text_or_path).read_text()
        except OSError as exc:
            raise StylelabError(f"cannot read report manifest {text_or_path}: {exc.strerror}.") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise StylelabError(f"the report manifest is not valid JSON: {exc}.") from None
    if not isinstance(manifest, dict):
        raise StylelabError("the report manifest must be a JSON object.")
    return manifest


def write_report(manifest: dict, html_out: str | os.PathLike, pdf_out: str | os.PathLike | None = None,
                 template: str | os.PathLike | None = None, css: str | os.PathLike | None = None) -> list[Path]:
    """Render, then write both files; nothing is written unless both renderings succeeded.

    `template` and `css` are files; None means the ones installed with stylelab (stylelab.report).
    """
    start = time.perf_counter()
    html = render_html(manifest, template, css)
    html_s = time.perf_counter() - start
    pdf = render_pdf(html) if pdf_out else None
    log.info("rendered HTML in %.1f s%s", html_s,
             f", PDF in {time.perf_counter() - start - html_s:.1f} s" if pdf_out else "")
    written = [Path(html_out)]
    write_bytes_atomic(html_out, html.encode("utf-8"))
    if pdf_out:
        write_bytes_atomic(pdf_out, pdf)
        written.append(Path(pdf_out))
    return written
