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


def _conda_pins() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {d.replace(" ", "").lower() for d in pip if not d.startswith("-e")}


def test_every_dependency_is_pinned_exactly():
    for dep in _pyproject_pins():
        assert re.fullmatch(r"[a-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9a-z.]*", dep), dep


def test_environment_yml_matches_pyproject():
    assert _conda_pins() == _pyproject_pins()


def test_torch_pins():
    pins = _pyproject_pins()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins


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


def test_readme_pictures_exist_and_are_small():
    readme = (ROOT / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", readme)
    assert len(pictures) == 4, pictures
    for picture in pictures:
        path = ROOT / picture
        assert path.is_file() and path.stat().st_size < 300_000, picture
        assert path.read_bytes().startswith(b"\x89PNG")
