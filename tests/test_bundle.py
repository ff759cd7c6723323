"""`stylelab bundle`: a finished run as one zip, checked against tiny real runs and a small git repository."""

import json
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from stylelab.engine.transfer import run_transfer, write_outputs
from stylelab.report import render
from stylelab.spec import config as workflow_config, provenance
from stylelab.spec.settings import feature_inversion

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ["part1/inversion/conv_1.json", "part1/transfer/gram_w1e6.json"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cat, tiny_settings):
    """Two tiny real runs (an inversion, a transfer), written as the CLI writes them."""
    out = tmp_path_factory.mktemp("runs")
    small = dict(size=32, device="cpu", weights="caffe")
    settings = feature_inversion(str(cat), "conv_1", steps=(2,), **small)
    write_outputs(run_transfer(settings, progress=False), out / "part1/inversion", "conv_1.png", "conv_1.json")
    settings = tiny_settings(steps=(2,), weights="caffe")
    write_outputs(run_transfer(settings, progress=False), out / "part1/transfer", "gram_w1e6.png", "gram_w1e6.json")
    return out


def _git(repo: Path, *args: str, date: str = "2024-01-01T00:00:00") -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                           *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git repository with two commits (older, then HEAD), each with its own code.py."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for i, date in enumerate(("2024-01-01T00:00:00", "2024-02-01T00:00:00")):
        (repo / "code.py").write_text(f"VERSION = {i}\n")
        _git(repo, "add", "code.py")
        _git(repo, "commit", "-q", "-m", f"version {i}", date=date)
    return repo


def _results(runs: Path, tmp_path: Path, commits: list[str]) -> Path:
    """A finished run's results folder: the records (naming `commits`), a report, a summary, and a preview's
    results root inside it whose record is not this run's."""
    root = tmp_path / "results"
    shutil.copytree(runs, root)
    for path, commit in zip(RECORDS, commits):
        record = json.loads((root / path).read_text())
        record["versions"][provenance.COMMIT] = commit
        (root / path).write_text(json.dumps(record))
    (root / "report").mkdir()
    (root / "report/report.html").write_text("<html>report</html>")
    (root / "report/report.pdf").write_bytes(b"%PDF-1.7 fake")
    (root / "report/summary.json").write_bytes(b'{"runs": 2,\n "note": "byte for byte"}\n')
    (root / "preview/logs").mkdir(parents=True)
    shutil.copy(root / RECORDS[0], root / "preview/stray.json")
    return root


def _config(tmp_path: Path, root: Path, bundle: dict | None = None) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"results": str(root), "size": 32, **({"bundle": bundle} if bundle else {})}))
    return path


def _readme_files(readme: str) -> list[str]:
    return re.search(r"## Files\n\n```\n(.*?)```", readme, re.S).group(1).split()


def test_the_zip_holds_what_its_readme_lists_and_the_source_at_the_records_commit(runs, repo, tmp_path,
                                                                                  monkeypatch, run_cli):
    head = _git(repo, "rev-parse", "HEAD")
    root = _results(runs, tmp_path, [head, head])
    config = _config(tmp_path, root, {"name": "course-run", "authors": "A. Student"})
    monkeypatch.chdir(repo)
    code, _, err = run_cli("bundle", "--results", root, "--config", config)
    assert code == 0, err
    with zipfile.ZipFile(root / "course-run.zip") as archive:
        names = archive.namelist()
        readme = archive.read("README.md").decode()
        archive.extractall(tmp_path / "unpacked")
    assert names == _readme_files(readme)
    assert names == ["README.md", "config.yaml", "report/report.html", "report/report.pdf", "summary.json",
                     *[f"records/{path}" for path in RECORDS], "environment.txt", "source.tar"]
    unpacked = tmp_path / "unpacked"
    assert (unpacked / "summary.json").read_bytes() == (root / "report/summary.json").read_bytes()
    assert all((unpacked / "records" / path).read_bytes() == (root / path).read_bytes() for path in RECORDS)
    assert yaml.safe_load((unpacked / "config.yaml").read_text())["bundle"]["authors"] == "A. Student"
    assert re.search(r"^numpy==", (unpacked / "environment.txt").read_text(), re.M)
    with tarfile.open(unpacked / "source.tar") as tar:
        assert tar.pax_headers["comment"] == head  # what `git get-tar-commit-id` reads
        assert tar.extractfile("code.py").read() == b"VERSION = 1\n"
    assert "Authors: A. Student" in readme and "## Warnings" not in readme and head in readme
    # The same run bundled again gives the same bytes.
    code, _, err = run_cli("bundle", "--results", root, "--config", config, "--out", tmp_path / "again.zip")
    assert code == 0 and (tmp_path / "again.zip").read_bytes() == (root / "course-run.zip").read_bytes()


def test_several_commits_give_the_newest_source_and_a_warning(runs, repo, tmp_path, monkeypatch, run_cli):
    older, head = _git(repo, "rev-parse", "HEAD~1"), _git(repo, "rev-parse", "HEAD")
    root = _results(runs, tmp_path, [older, head + provenance.DIRTY])
    monkeypatch.chdir(repo)
    code, _, err = run_cli("bundle", "--results", root, "--config", _config(tmp_path, root))
    assert code == 0, err
    with zipfile.ZipFile(root / f"stylelab-{head[:12]}.zip") as archive:
        readme = archive.read("README.md").decode()
        with tarfile.open(fileobj=archive.open("source.tar")) as tar:
            assert tar.pax_headers["comment"] == head
    warnings = readme.split("## Warnings")[1].split("##")[0]
    assert "uncommitted changes" in warnings and "2 commits" in warnings and "newest" in warnings


def test_without_git_or_summary_the_readme_says_so(runs, tmp_path, monkeypatch, run_cli):
    root = _results(runs, tmp_path, ["f" * 40, "f" * 40])
    (root / "report/summary.json").unlink()
    monkeypatch.chdir(tmp_path)  # not a git checkout
    code, _, err = run_cli("bundle", "--results", root, "--config", _config(tmp_path, root), "--out", "b.zip")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        readme = archive.read("README.md").decode()
        assert "source.tar" not in archive.namelist() and "summary.json" not in archive.namelist()
    assert "No `source.tar`: git could not archive commit " + "f" * 40 in readme
    assert "No `summary.json`" in readme and _readme_files(readme)[-1] == "environment.txt"


@pytest.mark.parametrize("mistake, message", [
    ("no report", "has no report yet (report.pdf missing"),
    ("no records", "holds no run records"),
    ("no folder", "not found"),
    ("another run's config", "has results: elsewhere"),
])
def test_mistakes_are_one_line_exit_2_and_no_zip(runs, tmp_path, monkeypatch, run_cli, mistake, message):
    root = _results(runs, tmp_path, [])
    config = _config(tmp_path, root)
    if mistake == "no report":
        (root / "report/report.pdf").unlink()
    elif mistake == "no records":
        shutil.rmtree(root / "part1")
    elif mistake == "no folder":
        root = tmp_path / "missing"
    else:
        config.write_text("results: elsewhere\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("bundle", "--results", root, "--config", config)
    assert code == 2 and err.startswith("stylelab: error: ") and err.count("\n") == 1 and message in err
    assert not list(tmp_path.rglob("*.zip")) and not list(tmp_path.rglob(".*.tmp-*"))


def test_the_config_takes_an_optional_bundle_section_and_the_title_page_names_the_authors(runs):
    schema = workflow_config.config_schema()
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    jsonschema.validate(config, schema)
    jsonschema.validate({**config, "bundle": {"name": "run-1", "authors": "A. Student, B. Student"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "bundle": {"title": "x"}}, schema)
    section = {"id": "inversion", "figures": [], "records": [str(runs / RECORDS[0])]}
    title = render.render_html({"sections": [section], "config": {"size": 32, "bundle": {"authors": "Ada & Alan"}}})
    assert "<dt>Authors</dt><dd>Ada &amp; Alan</dd>" in title.split("</header>")[0]
    assert "<dt>Authors</dt>" not in render.render_html({"sections": [section], "config": {"size": 32}})


def test_make_bundle_passes_the_results_and_config_files():
    done = subprocess.run(["make", "-n", "-o", ".venv/.stylelab-installed", "bundle", "RESULTS=results/preview",
                           "CONFIGFILES=workflow/configs/preview.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert (".venv/bin/stylelab bundle --results results/preview --config config.yaml workflow/configs/preview.yaml"
            in done.stdout), done.stdout + done.stderr
