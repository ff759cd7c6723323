"""The report: figures and records -> a Jinja template -> one self-contained HTML page.

The figures are embedded as data URIs and the style sheet inline, so the page can be moved or mailed on
its own. Everything shown comes from the figure files and the records; nothing is recomputed here.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jinja2
from markupsafe import Markup

from .errors import StylelabError
from .runs import KIND_TITLES, Run, format_number, load_runs
from .images import write_bytes_atomic

DEFAULT_TEMPLATE = Path("report/templates/report.html.j2")
DEFAULT_CSS = Path("report/style.css")


@dataclass
class Section:
    """One experiment group of the report: its figures, in order, and its runs' records."""

    kind: str
    figures: list[Path]
    runs: list[Run] = field(default_factory=list)


def _data_uri(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StylelabError(f"cannot read figure {path}: {exc.strerror}. Make the figure first.") from None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _run_row(run: Run) -> dict:
    record = run.record
    if run.kind == "generation":
        settings = record["settings"]
        return {
            "label": run.label,
            "prompt": settings["prompt"],
            "steps": str(record["timing"]["steps"]),
            "guided_steps": record["timing"]["guided_steps"],
            "gram": record["style_distances"].get("gram"),
            "meanvar": record["style_distances"].get("meanvar"),
            "time_per_step_s": float(record["timing"]["time_per_step_s"]),
            "model": record["model"]["source"],
            "stand_in": bool(record["model"]["embedded"]),
        }
    return {
        "label": run.label,
        "steps": ", ".join(str(s) for s in run.steps),
        "initial_loss": float(record["initial_loss"]),
        "final_loss": float(record["final_losses"]["total"]),
        "time_per_step_s": float(record["timing"]["time_per_step_s"]),
        "optimise_s": float(record["timing"]["optimise_s"]),
    }


# The settings worth showing for each kind of experiment, in this order.
_SETTINGS_SHOWN = {
    "inversion": ("content", "content_weight", "init", "steps", "seed"),
    "texture": ("style", "style_loss", "style_weight", "init", "steps", "seed"),
    "transfer": ("content", "style", "content_layers", "style_layers", "content_weight", "init", "steps", "seed"),
    "generation": ("style", "style_layers", "seed", "cfg_scale", "size", "guidance_start", "guidance_end",
                   "guidance_every", "precision"),
}
_NETWORK_SETTINGS = ("weights", "device", "optimizer", "lr", "bounds")


def _settings_of(kind: str, runs: Sequence[Run]) -> dict:
    """The settings every run of a section shares (those that differ are in the runs table)."""
    shared = {}
    for key in _SETTINGS_SHOWN[kind] + _NETWORK_SETTINGS:
        values = [run.record["settings"].get(key) for run in runs]
        if values[0] is not None and all(v == values[0] for v in values):
            value = values[0]
            shown = ", ".join(map(format_number, value)) if isinstance(value, list) else format_number(value)
            shared[key.replace("_", " ")] = shown
    h, w = runs[0].record["image_size"]
    shared["image size"] = f"{w} x {h} px"
    shared["device name"] = runs[0].record.get("device_name", "")
    return shared


def build_sections(sections: Sequence[Sequence[str]], record_paths: Sequence[str | os.PathLike]) -> list[Section]:
    """`sections` as the CLI gives them: [kind, figure, figure, ...] each; records are sorted by their kind."""
    runs = load_runs(record_paths)
    built = []
    for kind, *figures in sections:
        if kind not in KIND_TITLES:
            raise StylelabError(f"unknown report section '{kind}'; choose one of {', '.join(KIND_TITLES)}.")
        built.append(Section(kind, [Path(f) for f in figures], [r for r in runs if r.kind == kind]))
    orphans = sorted({r.kind for r in runs} - {s.kind for s in built})
    if orphans:
        raise StylelabError(f"records of kind {', '.join(orphans)} have no --section in the report.")
    return built


def render_report(sections: Sequence[Section], template: str | os.PathLike = DEFAULT_TEMPLATE,
                  css: str | os.PathLike = DEFAULT_CSS) -> str:
    template, css = Path(template), Path(css)
    for path, what in ((template, "template"), (css, "style sheet")):
        if not path.is_file():
            raise StylelabError(f"report {what} {path} not found; run from the repository root or give "
                                f"--{'template' if what == 'template' else 'css'} PATH.")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template.parent)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    all_runs = [run for section in sections for run in section.runs]
    stand_ins = sorted({run.stand_in for run in all_runs if run.kind == "generation" and run.stand_in})
    context = {
        "stand_ins": stand_ins,
        "sections": [{
            "kind": section.kind,
            "title": KIND_TITLES[section.kind],
            "figures": [{"name": f.stem.replace("_", " "), "src": _data_uri(f)} for f in section.figures],
            "settings": _settings_of(section.kind, section.runs) if section.runs else {},
            "runs": [_run_row(run) for run in section.runs],
        } for section in sections],
        # Our own file, read as is: escaping would break the CSS inside <style>.
        "css": Markup(css.read_text()),
        "versions": all_runs[0].record.get("versions", {}) if all_runs else {},
        "n_records": len(all_runs),
    }
    return env.get_template(template.name).render(**context)


def write_report(sections: Sequence[Sequence[str]], record_paths: Sequence[str | os.PathLike],
                 out: str | os.PathLike, template: str | os.PathLike = DEFAULT_TEMPLATE,
                 css: str | os.PathLike = DEFAULT_CSS) -> Path:
    html = render_report(build_sections(sections, record_paths), template, css)
    write_bytes_atomic(out, html.encode("utf-8"))
    return Path(out)
