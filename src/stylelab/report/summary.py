"""A results folder as one JSON file: per run its experiment, settings, final metrics, images' SHA-256 and
provenance, read from the records only (the report writes it; `stylelab compare` reads it). Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Iterable

from stylelab.report.analysis import image_metrics
from stylelab.report.runs import load_runs
from stylelab.spec import provenance
from stylelab.spec.files import file_digest, write_bytes_atomic
from stylelab.spec.records import RECORD_NAME, TransferRecord

SUMMARY_VERSION = 1
METRICS = ("final_objective", "content", "gram", "meanvar", "s_per_step", "total_s")


def _number(value) -> float | None:
    """A metric as JSON holds it: a finite float, else None (a record writes NaN as the text 'nan')."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()


def run_summary(record_path: str | os.PathLike, root: str | os.PathLike) -> dict:
    """One run: where it is under `root` (experiment and name), its settings, metrics, images and provenance."""
    run = load_runs([record_path])[0]
    record, where = run.record, Path(_relative(run.path, root))
    folder = where.parent.parent if where.name == RECORD_NAME else where.parent
    final = image_metrics(run)[-1] if record.images else {}
    commit = provenance.result_commits([record.versions])[0]
    images = {_relative(run.image_path(step), root): file_digest(run.image_path(step)) for step in run.steps}
    return {
        "experiment": folder.as_posix(),
        "name": where.parent.name if where.name == RECORD_NAME else where.stem,
        "kind": record.kind,
        "record": where.as_posix(),
        # through JSON, so a scanned run and one read back from a summary file compare equal (tuples: lists)
        "settings": json.loads(json.dumps(dataclasses.asdict(record.settings), default=str)),
        "metrics": {
            "final_objective": (_number(record.final_losses.get("total"))
                                if isinstance(record, TransferRecord) else None),
            "content": _number(final.get("content")),
            "gram": _number(final.get("gram")),
            "meanvar": _number(final.get("meanvar")),
            "s_per_step": _number(record.timing.time_per_step_s),
            "total_s": _number(record.timing.loop_s + record.timing.setup_s),
        },
        "images": images,
        "final_image": _relative(run.image_path(), root) if record.images else None,
        "commit": commit["commit"],
        "dirty": commit["dirty"],
        "device": record.device,
        "precision": record.precision,
    }


def build_summary(record_paths: Iterable[str | os.PathLike], root: str | os.PathLike) -> dict:
    """The summary of the given records (each once), its runs sorted by experiment and name."""
    paths = dict.fromkeys(Path(path).resolve() for path in record_paths)
    runs = sorted((run_summary(path, root) for path in paths), key=lambda run: (run["experiment"], run["name"]))
    return {"summary_version": SUMMARY_VERSION, "root": str(root), "runs": runs}


def write_summary(summary: dict, out: str | os.PathLike) -> Path:
    """Write a summary (build_summary's) as JSON to `out`, whole or not at all."""
    write_bytes_atomic(out, (json.dumps(summary, indent=1) + "\n").encode())
    return Path(out)


def manifest_records(manifest: dict) -> list[str]:
    """Every record a report manifest names: its sections' records and transfers, and its sweeps' records."""
    sections = manifest.get("sections", [])
    return [*(record for section in sections for key in ("records", "transfers") for record in section.get(key, [])),
            *(record for sweep in manifest.get("sweeps", []) for record in sweep.get("records", []))]
