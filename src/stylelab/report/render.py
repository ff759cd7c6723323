"""The report: records, figures, benchmark files and the config -> Jinja templates -> HTML and PDF.

`write_report` renders a manifest (per section its figures and records, the benchmark files, the config) with
the packaged templates/report.html.j2 and style.css into one self-contained HTML file, and with WeasyPrint an
A4 PDF. Nothing is recomputed except simple comparisons (stylelab.report.analysis). Torch-free.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import importlib.resources
import io
import json
import logging
import os
import platform
import shlex
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
from stylelab.spec.files import file_digest, write_bytes_atomic
from stylelab.report.runs import STYLE_LOSS_NAMES, Run, load_runs
from stylelab.spec.settings import format_number

log = logging.getLogger("stylelab.report.render")

# The packaged template and style sheet (report/ in the source tree), used when none is given.
REPORT_FILES = "stylelab.report"
TEMPLATE_DIR, TEMPLATE_NAME = "templates", "report.html.j2"
CSS_NAME = "style.css"

# The "what was run" table of a Part 2 section (fields of GuidanceSettings); a Part 1 section's is made from the
# config's settings (stylelab.spec.config), so a setting added to a config section shows by itself.
GENERATION_SETTINGS_SHOWN = ("prompt", "style", "style_layers", "seed", "cfg_scale", "size", "guidance_start",
                             "guidance_end", "guidance_every", "precision", "weights")


# Figures are embedded small enough to mail the report (under 3 MB). Figures of images go in at the HTML
# column's width (944 px: style.css's 62rem less padding), Lanczos, as JPEG at quality 80 without chroma
# subsampling (which visibly blurs the shallow textures' colour noise), unless the full-size PNG is smaller.
# Line plots stay full-size PNG, quantised to 256 colours. Alpha is dropped (all opaque).
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
            if img.mode in ("RGB", "L", "P"):
                rgb = img.convert("RGB")
            else:
                rgba = img.convert("RGBA")
                rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise StylelabError(f"figure {path} cannot be read ({exc}); make it again.") from None
    if photographic:
        png = _encoded(rgb, "PNG")  # optimize=True: 1 to 2% smaller, six times slower
        if rgb.width > EMBED_WIDTH:
            rgb = rgb.resize((EMBED_WIDTH, round(rgb.height * EMBED_WIDTH / rgb.width)), Image.LANCZOS)
        jpeg = _encoded(rgb, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)
        return ("image/jpeg", jpeg) if len(jpeg) < len(png) else ("image/png", png)
    # A line plot has few colours: 256 keep it as it is (a third of the full PNG's size in the preview's plots).
    palette = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return "image/png", _encoded(palette, "PNG", optimize=True)


def _devices(runs: Sequence[Run]) -> list[str]:
    return provenance.unique(f"{run.record.device} ({run.record.device_name})" for run in runs)


def _settings_table(kind: str, runs: Sequence[Run]) -> tuple[dict, list[str]]:
    """(settings every run shares, names of the settings that differ between runs)."""
    names = GENERATION_SETTINGS_SHOWN
    if kind != "generation":
        names = ("content", "style", "content_layers", "style_layers") + SECTION_SETTINGS[kind]
        names += TRANSFER_RUN_SETTINGS + PART3_SETTINGS if kind == "transfer" else ()
        # not `size`: the table shows the image size the records measured
        names += tuple(name for name in NETWORK_SETTINGS if name != "size")
    shared, differ = {}, []
    for name in dict.fromkeys(names):  # each once, first place kept
        values = [getattr(run.record.settings, name) for run in runs]
        if all(v is None or v in ([], ()) for v in values):
            continue
        if all(v == values[0] for v in values):
            value = values[0]
            shared[name.replace("_", " ")] = (", ".join(map(format_number, value)) if isinstance(value, (list, tuple))
                                              else format_number(value))
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


def _origin(path: str, seen: dict) -> dict:
    """One line of a figure's "how this was made": a record (the command that made it, with its spec, its commit
    and whether the tree was clean, its and its input images' SHA-256, device, precision, time) or an input image."""
    if path in seen:
        return seen[path]
    entry: dict = {"file": path, "sha256": file_digest(path), "inputs": []}
    if path.endswith(".json"):
        record = load_runs([path])[0].record
        noted = record.versions.get(provenance.COMMIT) or ""
        settings = record.settings
        images = [getattr(settings, key, None) for key in ("content", "style", "init")]
        images = [p for value in images for p in ([value] if isinstance(value, str) else value or [])]
        entry.update(command=shlex.join(record.command) if record.command else None,
                     spec=json.dumps(dataclasses.asdict(settings), sort_keys=True, default=str),
                     commit=noted.removesuffix(provenance.DIRTY) or None, clean=not noted.endswith(provenance.DIRTY),
                     inputs=[{"file": p, "sha256": file_digest(p)} for p in dict.fromkeys(images) if Path(p).is_file()],
                     device=f"{record.device} ({record.device_name})", precision=record.precision,
                     time_s=float(record.timing.setup_s + record.timing.loop_s))
    seen[path] = entry
    return entry


def _number_figures(sections: list[dict], intros: dict, made_by: dict) -> list[dict]:
    """Every figure in the report's order, numbered, each with where it came from."""
    seen, ordered = {}, []
    for part in provenance.unique(s["part"] for s in sections):
        ordered += intros.get(part, []) + [f for s in sections if s["part"] == part for f in s["figures"]]
    for number, figure in enumerate(ordered, 1):
        figure["number"] = number
        figure["made"] = [_origin(p, seen) for p in made_by.get(figure["path"], [])]
        # Each command (with its spec) and input image once: several records often come from one job.
        figure["commands"] = provenance.unique(item.get("command") or f"(an older record, its spec: {item['spec']})"
                                               for item in figure["made"] if "spec" in item)
        figure["inputs"] = list({i["file"]: i for item in figure["made"] for i in item["inputs"]}.values())
    return ordered


def _figure(path: Path, stand_in: str | None = None, sweep: str | None = None) -> dict:
    """A figure as the report embeds it: a declared one, a sweep's (`sweep`: grid or metrics) or one by hand."""
    declared = contents.figure(path.stem)
    photo, caption = (declared.photo, declared.caption) if declared else (False, path.stem.replace("_", " "))
    if sweep:
        _, photo, caption = contents.SWEEP_FIGURES[sweep]
    mime, data = embedded_image(path, photo)
    src = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return {"name": path.stem, "caption": caption, "src": src, "stand_in": stand_in, "path": str(path)}


# The findings of each section but inversion (whose pixel errors also fill its runs table) and guidance.
_FINDINGS = {"texture": analysis.texture_findings, "transfer": analysis.transfer_findings,
             "prompt": analysis.prompt_findings, "colour": analysis.colour_findings,
             "scales": analysis.scales_findings, "blend": analysis.blend_findings}


def build_section(spec: dict) -> dict:
    """One section's context from its manifest entry: figures, settings, runs, metrics and findings."""
    section_id = spec["id"]
    meta = {k: v for k, v in dataclasses.asdict(contents.section(section_id)).items()
            if k not in ("records", "transfers")}
    kind = meta["kind"]
    runs = load_runs(spec["records"])
    wrong = sorted({run.kind for run in runs} - {kind})
    if wrong:
        raise StylelabError(f"section '{section_id}' shows records of kind {kind}, but got {', '.join(wrong)} "
                            f"({', '.join(str(run.path) for run in runs if run.kind != kind)}).")
    transfers = load_runs(spec["transfers"]) if spec.get("transfers") else []
    stand_in = "; ".join(provenance.unique(run.stand_in for run in runs if run.stand_in)) or None
    settings, differ = _settings_table(kind, runs)
    context = {"id": section_id, **meta, "settings": settings, "differ": differ, "stand_in": stand_in,
               "figures": [_figure(Path(f), stand_in) for f in spec["figures"]], "metrics": [],
               "n_runs": len(runs) + len(transfers), "records": runs + transfers}
    errors = None
    if section_id == "inversion":
        errors, context["findings"] = analysis.inversion_findings(runs)
    elif section_id == "guidance":
        context["findings"] = analysis.guidance_findings(runs, transfers)
    else:
        context["findings"] = _FINDINGS[section_id](runs)
    context["runs"] = _run_rows(kind, runs, errors)
    if section_id == "transfer" or kind == "generation":
        context["metrics"] = [m for run in runs for m in analysis.image_metrics(run)]
    if kind == "generation":
        context["metrics"] += [m for run in transfers
                               for m in analysis.image_metrics(run, "Part 1 transfer on the unguided sample: ")]
        if transfers:
            context["transfer_settings"] = _settings_table("transfer", transfers)[0]
    return context


def build_sweep(index: int, spec: dict) -> dict:
    """A sweep's section (part Sweeps, after Part 3) from its manifest entry: what was run, its two figures,
    its runs labelled by their values, and findings along the varied settings."""
    runs, vary = load_runs(spec["records"]), list(spec["vary"])
    kind = runs[0].kind
    stand_in = "; ".join(provenance.unique(run.stand_in for run in runs if run.stand_in)) or None
    settings, differ = _settings_table(kind, runs)
    labels = [", ".join(f"{key} = {analysis.sweep_value(run, key)}" for key in vary) for run in runs]
    rows = _run_rows(kind, runs)
    metrics = [{**row, "label": label} for row, label in zip(analysis.sweep_metrics(runs), labels)]
    return {"id": f"sweep-{spec['name']}", "part": "Sweeps", "letter": chr(ord("A") + index % 26), "kind": kind,
            "title": f"{spec['name']}: {contents.SWEEP_EXPERIMENTS[spec['experiment']]} over {' and '.join(vary)}",
            "about": contents.sweep_about(spec["experiment"], spec.get("settings", {}), spec["vary"],
                                          spec.get("shared", [])),
            "settings": settings, "differ": differ, "stand_in": stand_in, "n_runs": len(runs), "records": runs,
            "figures": [_figure(Path(f), stand_in, d) for f, d in zip(spec["figures"], contents.SWEEP_FIGURES)],
            "findings": analysis.sweep_findings(runs, vary), "metrics": metrics,
            "runs": [{**row, "label": label} for row, label in zip(rows, labels)]}


def _packages(versions: dict) -> dict:
    """A record's versions without the code's commit, which the report shows by itself."""
    return {name: v for name, v in versions.items() if name != provenance.COMMIT}


def _models(runs: Sequence[Run]) -> list[dict]:
    """The diffusion models the generations sampled from, each once, with their files' checksums."""
    found = {}
    for run in runs:
        model = getattr(run.record, "model", None)
        if model is None:
            continue
        key = (model.name, model.source, model.commit)
        found.setdefault(key, {**dataclasses.asdict(model),
                               "files": [{**f, "shown_size": _bytes(f["size"])} for f in model.files]})
    return list(found.values())


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def build_context(manifest: dict, css: str) -> dict:
    sections = [build_section(spec) for spec in manifest.get("sections", [])]
    sections += [build_sweep(i, spec) for i, spec in enumerate(manifest.get("sweeps", []))]
    if not sections:
        raise StylelabError("the report manifest lists no sections.")
    all_runs = list({run.path: run for section in sections for run in section.pop("records")}.values())
    intros = {part: [_figure(Path(f)) for f in figures] for part, figures in manifest.get("intro", {}).items()}
    figures = _number_figures(sections, intros, manifest.get("made_by", {}))
    config = manifest.get("config", {})
    versions = _packages(all_runs[0].record.versions) if all_runs else {}
    git = provenance.git_state()
    # The commits that computed the results; when the report is rendered from another, the title page names both.
    results = provenance.result_commits(run.record.versions for run in all_runs)
    return {
        "title": manifest.get("title", "Neural style experiments"),
        "authors": (config.get("bundle") or {}).get("authors"),  # the config's bundle.authors, on the title page
        "sections": sections,
        "intros": intros,
        "parts": provenance.unique(s["part"] for s in sections),
        "part_titles": contents.PARTS,
        "stand_ins": provenance.unique(s["stand_in"] for s in sections if s["stand_in"]),
        "n_records": len(all_runs),
        "n_figures": len(figures),
        "figures": figures,
        "provenance": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "git": git,
            "results": results,
            "same_commit": git["commit"] is not None and [(r["commit"], r["dirty"]) for r in results]
                           == [(git["commit"], bool(git["dirty"]))],
            "versions": versions or _packages(provenance.package_versions()),
            "versions_differ": sorted({name for run in all_runs for name, v in _packages(run.record.versions).items()
                                       if versions.get(name) != v}),
            "devices": _devices(all_runs),
            "precisions": provenance.unique(run.record.precision for run in all_runs),
            "weights": provenance.unique(run.record.weights for run in all_runs),
            "seeds": provenance.unique(run.record.seed for run in all_runs),
            "models": _models(all_runs),
            "host": platform.node(),
            "config_yaml": (yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
                            if config else ""),
            "costs": provenance.cost_table(manifest.get("benchmarks", {}), manifest.get("root", ".")),
        },
        "css": Markup(css),  # our own file, read as is: escaping would break the CSS inside <style>
        "loss_names": STYLE_LOSS_NAMES,
    }


def _report_file(given: str | os.PathLike | None, what: str, option: str, *parts: str):
    """The file given with `option`, else the packaged one at `parts` (an importlib.resources Traversable)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise StylelabError(f"report {what} {path} not found; give {option} PATH, or leave {option} out to use "
                                "the one installed with stylelab.")
        return path
    try:
        resource = importlib.resources.files(REPORT_FILES).joinpath(*parts)
    except ModuleNotFoundError:
        resource = None
    if resource is None or not resource.is_file():
        raise StylelabError(f"the report file {'/'.join(parts)} installed with stylelab ({REPORT_FILES}) is "
                            "missing; reinstall stylelab (pip install .), or give --template and --css.")
    return resource


def render_html(manifest: dict, template: str | os.PathLike | None = None,
                css: str | os.PathLike | None = None) -> str:
    """The report as one HTML page. `template` and `css` are files; None means the ones installed with stylelab."""
    return render_both(manifest, template, css)[0]


def render_both(manifest: dict, template: str | os.PathLike | None = None,
                css: str | os.PathLike | None = None) -> tuple[str, str]:
    """The HTML page, and the page the PDF is printed from: where each figure came from is a collapsed block
    under the figure in the one and a table per figure in an appendix of the other."""
    path = _report_file(template, "template", "--template", TEMPLATE_DIR, TEMPLATE_NAME)
    if template is None:
        loader, name = jinja2.PackageLoader(REPORT_FILES, TEMPLATE_DIR), TEMPLATE_NAME
    else:
        loader, name = jinja2.FileSystemLoader(str(path.parent)), path.name
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["g"] = analysis.g
    env.filters["num"] = format_number
    sheet = _report_file(css, "style sheet", "--css", CSS_NAME).read_text(encoding="utf-8")
    context = build_context(manifest, sheet)
    page = env.get_template(name)
    return page.render(**context, for_print=False), page.render(**context, for_print=True)


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
    """Render the HTML and, with WeasyPrint, an A4 PDF (the style sheet's print rules); nothing is written unless
    both renderings succeeded."""
    start = time.perf_counter()
    html, printed = render_both(manifest, template, css)
    html_s = time.perf_counter() - start
    if pdf_out:
        try:
            import weasyprint
        except (ImportError, OSError) as exc:
            raise StylelabError(f"WeasyPrint cannot start ({exc}). It needs the Debian libraries libpango-1.0-0 "
                                "libpangoft2-1.0-0 libharfbuzz-subset0: run `make env` as root, or install them "
                                "with apt-get.") from None
        logging.getLogger("weasyprint").setLevel(logging.ERROR)
        logging.getLogger("fontTools").setLevel(logging.ERROR)
        pdf = weasyprint.HTML(string=printed, base_url=".").write_pdf()
    log.info("rendered HTML in %.1f s%s", html_s,
             f", PDF in {time.perf_counter() - start - html_s:.1f} s" if pdf_out else "")
    write_bytes_atomic(html_out, html.encode("utf-8"))
    if not pdf_out:
        return [Path(html_out)]
    write_bytes_atomic(pdf_out, pdf)
    return [Path(html_out), Path(pdf_out)]
