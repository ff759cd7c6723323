"""Two results folders side by side: their runs paired by experiment and name, the settings that differ, the
metrics of each pair and their ratio, and the final images with their difference (`stylelab compare`).

A folder's runs come from its report/summary.json (stylelab.report.summary) where there is one, else from
the record files under it. Writes DIR/compare.json and one self-contained DIR/compare.html. Torch-free.
"""

from __future__ import annotations

import base64
import importlib.resources
import io
import json
import math
import os
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup
from PIL import Image

from stylelab.report.analysis import g
from stylelab.report.render import CSS_NAME, REPORT_FILES, TEMPLATE_DIR
from stylelab.report.summary import METRICS, SUMMARY_VERSION, run_summary
from stylelab.spec.errors import StylelabError
from stylelab.spec.files import write_bytes_atomic
from stylelab.spec.settings import format_number

COMPARE_VERSION = 1
# Not scanned for records: a results folder's other files, and results folders nested in it (which hold one
# of NESTED), such as results/preview.
SKIPPED, NESTED = {"logs", "benchmarks", "report", "figures"}, ("part1", "part2", "part3", "sweeps", "report")
# What "moved most" looks at: the unweighted measures of the final image; not the final objective, which moves
# with the weights, nor the timings, which move from one machine to the next.
RESULT_METRICS = {"content": "content loss", "gram": "Gram distance", "meanvar": "MeanVar distance"}
THUMB_WIDTH = 300
RUN_KEYS = {"experiment", "name", "kind", "settings", "metrics", "images"}  # what a summary's run needs here


def _scan(root: Path) -> list[dict]:
    """The summary of every record file under `root` (a JSON file that is not a record is passed over)."""
    runs = []
    for folder, subfolders, files in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".") and name not in SKIPPED
                               and not any((here / name / inner).is_dir() for inner in NESTED))
        for name in sorted(name for name in files if name.endswith(".json")):
            try:
                runs.append(run_summary(here / name, root))
            except StylelabError:
                continue
    return runs


def load_side(root: str | os.PathLike) -> dict[tuple[str, str], dict]:
    """A results folder's runs by (experiment, name): from report/summary.json, else from its records."""
    root, summary = Path(root), Path(root) / "report" / "summary.json"
    if not root.is_dir():
        raise StylelabError(f"results folder {root} does not exist; give a folder the workflow wrote results to.")
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
            runs = data["runs"] if data["summary_version"] == SUMMARY_VERSION else None
        except (ValueError, TypeError, KeyError):
            runs = None
        if not isinstance(runs, list) or not all(isinstance(run, dict) and RUN_KEYS <= run.keys() for run in runs):
            raise StylelabError(f"{summary} is not a summary stylelab reads (version {SUMMARY_VERSION}); delete it "
                                "to compare the records themselves, or make the report again.")
    else:
        runs = _scan(root)
    if not runs:
        raise StylelabError(f"{root} holds no run records (nor a report/summary.json); give a results folder.")
    return {(run["experiment"], run["name"]): _rooted(run, root) for run in runs}


def _rooted(run: dict, root: Path) -> dict:
    """A run whose settings name files inside its results folder (a transfer's generated content image) as
    <results>/..., so that two folders' runs of the same settings compare equal."""
    prefixes = {f"{root.as_posix().rstrip('/')}/", f"{root.resolve().as_posix()}/"}

    def rooted(value):
        prefix = next((p for p in prefixes if isinstance(value, str) and value.startswith(p)), None)
        return "<results>/" + value[len(prefix):] if prefix else value
    return {**run, "settings": {key: rooted(value) for key, value in run["settings"].items()}}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else b / a


def _pair(a: dict, b: dict) -> dict:
    keys = dict.fromkeys([*a["settings"], *b["settings"]])
    images = {"a": a.get("final_image"), "b": b.get("final_image")}
    digests = (a["images"].get(images["a"]), b["images"].get(images["b"]))
    return {"name": a["name"], "kind": a["kind"], "renamed_from": a.get("renamed_from"),
            "settings_differ": {k: [a["settings"].get(k), b["settings"].get(k)] for k in keys
                                if a["settings"].get(k) != b["settings"].get(k)},
            "a": a["metrics"], "b": b["metrics"],
            "ratio": {m: _ratio(a["metrics"].get(m), b["metrics"].get(m)) for m in METRICS},
            "images": {**images, "same": digests[0] is not None and digests[0] == digests[1]}}


def _one(values: dict):
    """The value every run has, else each run's value by name."""
    first = next(iter(values.values()))
    return first if all(value == first for value in values.values()) else values


def _moved_most(experiment: str, pairs: list[dict]) -> tuple[dict | None, str]:
    """The result metric of a pair whose ratio B/A is furthest from 1 (on a log scale), and a sentence."""
    moves = [(abs(math.log(ratio)), metric, pair) for pair in pairs for metric, ratio in pair["ratio"].items()
             if metric in RESULT_METRICS and ratio is not None and ratio > 0]
    if not moves:
        return None, f"{experiment}: {'no result metric that both sides measured' if pairs else 'no run in both'}."
    size, metric, pair = max(moves, key=lambda move: move[0])
    if size == 0:
        return None, f"{experiment}: no result metric moved; each is the same in A and B."
    moved = {"metric": metric, "run": pair["name"], "a": pair["a"][metric], "b": pair["b"][metric],
             "ratio": pair["ratio"][metric]}
    return moved, (f"{experiment}: the {RESULT_METRICS[metric]} of {pair['name']} moved most, from {g(moved['a'])} "
                   f"in A to {g(moved['b'])} in B (x{g(moved['ratio'])}).")


def _renamed(only_a: dict, only_b: dict, most: int = 2) -> list[tuple[str, str]]:
    """Runs of one experiment that pair although their names differ (names are made from settings: a changed
    weight renames meanvar_w10 to meanvar_w15): each with the run of the other side whose settings differ in
    the fewest keys, at most `most`, closest first, each run once."""
    def apart(a: dict, b: dict) -> int:
        return sum(a["settings"].get(k) != b["settings"].get(k) for k in {*a["settings"], *b["settings"]})

    found, used = [], set()
    for distance, a, b in sorted((apart(only_a[a], only_b[b]), a, b) for a in only_a for b in only_b):
        if distance <= most and a not in used and b not in used:
            found.append((a, b))
            used |= {a, b}
    return found


def _experiment(name: str, runs_a: dict, runs_b: dict, every: bool) -> dict:
    mine_a = {run: value for (experiment, run), value in runs_a.items() if experiment == name}
    mine_b = {run: value for (experiment, run), value in runs_b.items() if experiment == name}
    renamed = _renamed({r: v for r, v in mine_a.items() if r not in mine_b},
                       {r: v for r, v in mine_b.items() if r not in mine_a})
    for a, b in renamed:  # paired under B's name, A's run taken along
        mine_a[b] = {**mine_a.pop(a), "name": b, "renamed_from": a}
    paired = sorted(mine_a.keys() & mine_b.keys())
    pairs = [_pair(mine_a[run], mine_b[run]) for run in paired]
    differ = {}
    for key in dict.fromkeys(k for run in paired for side in (mine_a, mine_b) for k in side[run]["settings"]):
        values = {run: [mine_a[run]["settings"].get(key), mine_b[run]["settings"].get(key)] for run in paired}
        shown = {run: v for run, v in values.items() if v[0] != v[1]} or (values if every else {})
        if shown:
            differ[key] = [_one({run: v[0] for run, v in shown.items()}), _one({run: v[1] for run, v in shown.items()})]
    moved, finding = _moved_most(name, pairs)
    return {"experiment": name, "settings_differ": differ, "pairs": pairs,
            "only_in_a": sorted(mine_a.keys() - mine_b.keys()), "only_in_b": sorted(mine_b.keys() - mine_a.keys()),
            "moved_most": moved, "finding": finding}


def compare(a: str | os.PathLike, b: str | os.PathLike, every: bool = False) -> dict:
    """compare.json's content: per experiment of either folder, its pairs and what differs (`every`: every
    setting of the paired runs, not only those that differ)."""
    runs_a, runs_b = load_side(a), load_side(b)
    if not runs_a.keys() & runs_b.keys():
        raise StylelabError(f"{a} and {b} have no run in common (runs pair by experiment and name, such as "
                            f"{'/'.join(min(runs_a))} and {'/'.join(min(runs_b))}); compare two results folders.")
    experiments = sorted({experiment for experiment, _ in [*runs_a, *runs_b]})
    return {"compare_version": COMPARE_VERSION, "a": str(a), "b": str(b),
            "experiments": [_experiment(name, runs_a, runs_b, every) for name in experiments]}


def table(result: dict) -> str:
    """The terminal's summary: a line per experiment."""
    rows = [("experiment", "pairs", "only A", "only B", "settings that differ", "moved most")]
    for e in result["experiments"]:
        moved = e["moved_most"]
        rows.append((e["experiment"], str(len(e["pairs"])), str(len(e["only_in_a"])), str(len(e["only_in_b"])),
                     ", ".join(dict.fromkeys(k for pair in e["pairs"] for k in pair["settings_differ"])) or "-",
                     f"{moved['metric']} of {moved['run']} x{g(moved['ratio'])}" if moved else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _pixels(root: str | os.PathLike, image: str | None) -> np.ndarray | None:
    try:
        with Image.open(Path(root) / image) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, TypeError, ValueError):
        return None


def _data_uri(pixels: np.ndarray | None) -> str | None:
    """An image as a data: URI, at most THUMB_WIDTH pixels wide: PNG, or JPEG where that is smaller."""
    if pixels is None:
        return None
    img = Image.fromarray(pixels)
    if img.width > THUMB_WIDTH:
        img = img.resize((THUMB_WIDTH, max(1, round(img.height * THUMB_WIDTH / img.width))), Image.LANCZOS)
    encoded = []
    for fmt, options in (("PNG", {"optimize": True}), ("JPEG", {"quality": 85})):
        buffer = io.BytesIO()
        img.save(buffer, format=fmt, **options)
        encoded.append((len(buffer.getvalue()), fmt.lower(), buffer.getvalue()))
    _, fmt, data = min(encoded)
    return f"data:image/{fmt};base64," + base64.b64encode(data).decode("ascii")


def _pictures(pair: dict, a: str | os.PathLike, b: str | os.PathLike) -> dict:
    """A pair's final images and their absolute difference, amplified so its largest value is white."""
    pixels = (_pixels(a, pair["images"]["a"]), _pixels(b, pair["images"]["b"]))
    shown = {"a": _data_uri(pixels[0]), "b": _data_uri(pixels[1]), "diff": None}
    if any(p is None for p in pixels):
        return {**shown, "note": "an image is missing"}
    if pixels[0].shape != pixels[1].shape:
        (ha, wa, _), (hb, wb, _) = pixels[0].shape, pixels[1].shape
        return {**shown, "note": f"sizes differ ({wa} x {ha} against {wb} x {hb} px)"}
    diff = np.abs(pixels[0].astype(np.int16) - pixels[1].astype(np.int16))
    peak = int(diff.max())
    if peak == 0:
        return {**shown, "note": "identical pixels"}
    shown["diff"] = _data_uri(np.round(diff * (255 / peak)).astype(np.uint8))
    return {**shown, "note": f"|A - B| x {g(255 / peak)} (largest difference {peak} of 255)"}


def _shown(value) -> str:
    """A setting's value for the page: a value per run as 'run: value; ...'."""
    if isinstance(value, dict):
        return "; ".join(f"{run}: {_shown(v)}" for run, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_shown, value))
    return "-" if value is None else format_number(value)


def render_html(result: dict) -> str:
    """compare.html: one page, its images embedded, everything from the records escaped."""
    env = jinja2.Environment(loader=jinja2.PackageLoader(REPORT_FILES, TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(g=g, shown=_shown)
    css = importlib.resources.files(REPORT_FILES).joinpath(CSS_NAME).read_text(encoding="utf-8")
    pictures = {(e["experiment"], pair["name"]): _pictures(pair, result["a"], result["b"])
                for e in result["experiments"] for pair in e["pairs"]}
    return env.get_template("compare.html.j2").render(result=result, pictures=pictures, metrics=METRICS,
                                                      css=Markup(css))


def write_compare(a: str | os.PathLike, b: str | os.PathLike, out: str | os.PathLike, every: bool = False) -> dict:
    """DIR/compare.json and DIR/compare.html, written only once both are made."""
    result = compare(a, b, every)
    html = render_html(result)
    write_bytes_atomic(Path(out) / "compare.json", (json.dumps(result, indent=1) + "\n").encode())
    write_bytes_atomic(Path(out) / "compare.html", html.encode("utf-8"))
    return result
