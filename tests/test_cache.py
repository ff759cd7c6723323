"""Snakemake's between-workflow cache (`make preview CACHE=DIR`; workflow/rules/cache.smk), in fresh copies of
the project: a second copy takes every experiment from the cache and ends with the same images and report; a
changed setting, or changed code, misses the cache for exactly what it changes (about 4 minutes, in CI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_workflow import CONFIG, PREVIEW, PREVIEW_ROOT, copy_project, write_overlay

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def cached_snakemake(workdir: Path, cache: Path, *args: str, code: Path | None = None,
                     timeout: int = 900) -> subprocess.CompletedProcess:
    """Snakemake with the cache on (--cache, SNAKEMAKE_OUTPUT_CACHE), as `make preview CACHE=DIR` runs it;
    `code`: run stylelab from that source folder instead of the installed one."""
    env = {**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache)}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return subprocess.run([SNAKEMAKE, "--cores", "2", "--cache", "--configfile", PREVIEW, *args], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=timeout)


def images(workdir: Path) -> dict[str, bytes]:
    root = workdir / PREVIEW_ROOT
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def report_body(workdir: Path) -> str:
    """The report's sections, without the appendix (its date, host and the jobs' measured times)."""
    html = (workdir / PREVIEW_ROOT / "report/report.html").read_text()
    return html.split("<main>", 1)[1].split('<section id="provenance"', 1)[0]


def planned(output: str) -> dict[str, str]:
    """{a job's first output file: 'obtained from' or 'written to'} of a dry run's cache lines."""
    return dict(re.findall(r"Output file (\S+) will be (obtained from|written to) global", output))


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory) -> tuple[Path, Path, Path]:
    cache = tmp_path_factory.mktemp("cache")
    first = copy_project(tmp_path_factory.mktemp("first"))
    run = cached_snakemake(first, cache, "--", "report")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    stored = re.findall(r"Moving output file (\S+) to cache", run.stdout + run.stderr)
    assert len(stored) > 50
    second = copy_project(tmp_path_factory.mktemp("second"))
    run = cached_snakemake(second, cache, "--", "report")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    output = run.stdout + run.stderr
    assert sorted(re.findall(r"Symlinking output file (\S+) from cache", output)) == sorted(stored)
    assert "Moving output file" not in output
    return first, second, cache


def test_a_second_copy_takes_every_experiment_from_the_cache_and_ends_the_same(two_copies):
    first, second, _ = two_copies
    # No experiment ran in the second copy: its jobs' logs are empty (the command never started).
    logs = sorted((second / PREVIEW_ROOT / "logs/part1/transfer").glob("*.log"))
    assert logs and all(log.stat().st_size == 0 for log in logs)
    assert images(first) == images(second)
    assert report_body(first) == report_body(second)


def test_a_changed_setting_misses_the_cache_for_that_run_and_what_follows(two_copies, tmp_path):
    _, _, cache = two_copies
    third = copy_project(tmp_path / "third")
    runs = [dict(r) for r in CONFIG["transfer"]["runs"]]
    next(r for r in runs if r["style_loss"] == "meanvar" and r["style_weight"] == 10)["style_weight"] = 15
    name = write_overlay(third, "one-weight.yaml", yaml.safe_dump({"transfer": {"runs": runs}}))
    run = cached_snakemake(third, cache, "-n", "--configfile", PREVIEW, name, "--", "report")
    assert run.returncode == 0, run.stderr[-3000:]
    missed = {f for f, how in planned(run.stdout).items() if how == "written to"}
    # The preview runs an experiment's runs as one job (jobs.runs_in_one_job), so what misses is the job of the
    # changed run: the Part 1 transfers, the meanvar_weight sweep's points with them (a dry run names each job by
    # its first output). Every other experiment job comes from the cache.
    assert [Path(f).parent.name for f in missed] == ["transfer"], missed
    obtained = sum(how == "obtained from" for how in planned(run.stdout).values())
    assert obtained == len(planned(run.stdout)) - 1 >= 5


def test_changed_code_misses_the_cache(two_copies, tmp_path):
    _, _, cache = two_copies
    fourth = copy_project(tmp_path / "fourth")
    source = fourth / "src/stylelab/engine/losses.py"
    source.write_text(source.read_text() + "\n# a change to the engine's code\n")
    run = cached_snakemake(fourth, cache, "-n", "--", "report", code=fourth / "src")
    assert run.returncode == 0, run.stderr[-3000:]
    found = planned(run.stdout)
    assert found and set(found.values()) == {"written to"}
