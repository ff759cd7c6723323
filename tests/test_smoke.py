"""What `make test-quick` reaches however the quick loop is trimmed: every module of the package imports, and
the workflow's DAG builds from the config (a dry run of the preview, in a copy of the project). The workflow
itself, run for real: tests/test_workflow.py (slow)."""

from __future__ import annotations

import importlib
import pkgutil

import stylelab
from test_workflow import PREVIEW, copy_project, job_counts, snakemake


def test_every_module_imports():
    """A module that no quick test reaches still fails here on a broken import or a mistake at its top level."""
    # stylelab.__main__ runs the command line on import (`python -m stylelab`: tests/test_cli.py).
    names = [m.name for m in pkgutil.walk_packages(stylelab.__path__, "stylelab.") if m.name != "stylelab.__main__"]
    assert {"stylelab.cli.parser", "stylelab.engine.transfer", "stylelab.diffusion.guidance",
            "stylelab.report.render", "stylelab.run.runner", "stylelab.spec.config"} <= set(names)
    for name in names:
        importlib.import_module(name)


def test_the_preview_dag_has_a_job_of_each_kind_and_the_report(tmp_path):
    """`snakemake -n` with the preview configuration: the config validates, every rule file parses, and the DAG
    holds each experiment's runs as one job (jobs.runs_in_one_job), each part's figures as one, and the report."""
    project = copy_project(tmp_path / "project")
    run = snakemake(project, "-n", "--cores", "2", "--configfile", PREVIEW, "--", "report")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    experiments = {"inversion_layers", "texture_layers", "transfer_runs", "generate_runs", "transfer_on_generated_runs",
                   "part3_transfer_runs"}
    figures = {"part1_figures", "part2_figures", "part3_figures", "sweeps_figures"}
    assert job_counts(run.stdout) == dict.fromkeys(experiments | figures | {"models", "report"}, 1)
