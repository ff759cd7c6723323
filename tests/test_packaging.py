"""The project's set-up: pins agree everywhere, and CI runs the README's test command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"]) + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {d.replace(" ", "").lower() for d in deps}


def _conda_pins(path: str = "environment.yml") -> set[str]:
    env = yaml.safe_load((ROOT / path).read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {d.replace(" ", "").lower() for d in pip if not d.startswith("-e")}


def _conda_packages(path: str) -> tuple[list[str], list[str]]:
    """An environment file's channels and its conda packages (python, pip), without the pip section."""
    env = yaml.safe_load((ROOT / path).read_text())
    return env["channels"], [d for d in env["dependencies"] if isinstance(d, str)]


def test_every_dependency_is_pinned_exactly():
    for dep in _pyproject_pins():
        assert re.fullmatch(r"[a-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9a-z.]*", dep), dep


def test_environment_yml_matches_pyproject():
    assert _conda_pins() == _pyproject_pins()


def test_the_jobs_environment_is_environment_yml_without_the_test_tools():
    """workflow/envs/stylelab.yaml, every rule's `conda:` environment: the same channels, Python and pins as
    environment.yml, less the test extra (the project itself comes from its post-deploy script)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {d.replace(" ", "").lower() for d in project["dependencies"]}
    jobs = "workflow/envs/stylelab.yaml"
    assert _conda_pins(jobs) == runtime
    assert _conda_pins("environment.yml") - _conda_pins(jobs) == {
        d.replace(" ", "").lower() for d in project["optional-dependencies"]["test"]}
    assert _conda_packages(jobs) == _conda_packages("environment.yml")
    deploy = (ROOT / "workflow/envs/stylelab.post-deploy.sh").read_text()
    assert "pip install --no-deps --editable ." in deploy


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)$", quick_start, flags=re.M)
    assert commands == ["make report", "make test"], commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci


def test_generated_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for folder in ("/results/", "/.snakemake/", "/.venv/"):
        assert folder in ignored
