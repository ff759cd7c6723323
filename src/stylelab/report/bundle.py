"""A finished run as one zip archive: the report, the effective config, the run records, the summary, the Python
packages and the code at the results' commit, with a README that says what is where and how to rebuild it.

`write_bundle` checks everything before it writes and writes the zip whole or not at all; the same inputs give
the same bytes (members in a fixed order, all with one date). Torch-free.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from stylelab.spec import provenance
from stylelab.spec.config import read_configs
from stylelab.spec.errors import StylelabError
from stylelab.spec.files import write_bytes_atomic

REPORT_FILES = ("report.html", "report.pdf")
SUMMARY = "summary.json"  # beside the report, where `stylelab report --summary` wrote it
# A JSON file with these keys is a record (as stylelab.spec.records.read_record asks); a folder holding one of
# ROOT_FOLDERS is another run's results root (results/preview inside results), whose records are not this run's.
RECORD_KEYS = ("kind", "settings", "images", "history")
ROOT_FOLDERS = ("report", "logs", "benchmarks")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def find_records(root: Path) -> dict[str, dict]:
    """{path under `root`: record} of every record JSON under `root`, by path, none of a results root inside it."""
    found = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not any((here / d / name).is_dir() for name in ROOT_FOLDERS)]
        for name in (f for f in files if f.endswith(".json")):
            try:
                data = json.loads((here / name).read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and all(key in data for key in RECORD_KEYS):
                found[(here / name).relative_to(root).as_posix()] = data
    return dict(sorted(found.items()))


def _git(repo: str | os.PathLike, *args: str) -> bytes | None:
    """git's output, or None where git is missing or fails."""
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def source_commit(records: Iterable[dict], repo: str | os.PathLike) -> tuple[str | None, list[str]]:
    """(the commit whose code the bundle holds: the newest the records name, the README's warnings)."""
    found = provenance.result_commits(record.get("versions") or {} for record in records)
    named = [entry["commit"] for entry in found if entry["commit"]]
    warnings = [f"{_n(e['records'], 'record')} computed with uncommitted changes to commit {e['commit']}: its "
                "source is not exactly the code that ran." for e in found if e["dirty"]]
    warnings += [f"{_n(e['records'], 'record')} name no commit (computed outside a git checkout)."
                 for e in found if not e["commit"]]

    def date(commit: str) -> int:
        out = _git(repo, "show", "-s", "--format=%ct", f"{commit}^{{commit}}")
        return int(out.decode()) if out else -1

    newest = max(named, key=date) if named else None
    if len(named) > 1:
        warnings.append(f"The records were computed at {len(named)} commits ({', '.join(c[:12] for c in named)}); "
                        f"the source is the newest, {newest[:12]}.")
    return newest, warnings


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def pip_freeze() -> bytes:
    """This Python's packages, exactly (`python -m pip freeze`; the installed distributions where pip is missing)."""
    try:
        return subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, timeout=300,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        names = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
        return ("# pip is missing; the installed distributions instead\n" + "\n".join(names) + "\n").encode()


def _checked(results: Path, configs: Sequence[str]) -> tuple[dict, dict[str, dict]]:
    """(the effective config, the records), after one line for the first mistake."""
    if not results.is_dir():
        raise StylelabError(f"results folder {results} not found; give --results the config's `results:` folder.")
    records = find_records(results)
    if not records:
        raise StylelabError(f"{results} holds no run records (record JSON files); run the workflow first.")
    missing = [name for name in REPORT_FILES if not (results / "report" / name).is_file()]
    if missing:
        raise StylelabError(f"{results} has no report yet ({', '.join(missing)} missing in {results / 'report'}); "
                            "make the report first (make report, or make preview).")
    if not configs:
        raise StylelabError("no config file: give --config and the config files the run used, in order.")
    config = read_configs(configs)
    said = config.get("results")
    if said is not None and os.path.realpath(str(said)) != os.path.realpath(results):
        raise StylelabError(f"the config ({' + '.join(map(str, configs))}) has results: {said}, not {results}; give "
                            "the config files the run used (make bundle RESULTS=DIR CONFIGFILES='FILE ...').")
    name = (config.get("bundle") or {}).get("name")
    if name is not None and (not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..")):
        raise StylelabError(f"config: bundle.name must be a file name (letters, digits, _ . -), got {name!r}.")
    return config, records


def readme(config: dict, configs: Sequence[str], commit: str | None, warnings: list[str], members: list[str]) -> str:
    """The bundle's README.md: what each member is, how to rebuild the results and compare them with these."""
    bundle = config.get("bundle") or {}
    lines = [f"# {bundle.get('name') or 'stylelab results'}", ""]
    lines += [f"Authors: {bundle['authors']}", ""] if bundle.get("authors") else []
    lines += [f"A finished stylelab run (neural style experiments) from `{config.get('results', '?')}`, packed by "
              "`stylelab bundle`.", ""]
    lines += ["## Warnings", "", *[f"- {w}" for w in warnings], ""] if warnings else []
    n_records = sum(m.startswith("records/") for m in members)
    source = (f"`source.tar`: the code at commit {commit} (`git archive`; `git get-tar-commit-id < source.tar` "
              "prints the commit)." if "source.tar" in members else "No `source.tar`: "
              + (f"git could not archive commit {commit} here (no git, or another repository)."
                 if commit else "no record names a commit."))
    lines += ["## What is where", "",
              "- `report/report.html`, `report/report.pdf`: the report (the HTML file is self-contained).",
              f"- `config.yaml`: the effective config, as the workflow read it ({', then '.join(map(str, configs))}).",
              "- `summary.json`: the run's summary (`stylelab report --summary`)." if "summary.json" in members else
              "- No `summary.json`: the results had no report/summary.json (`stylelab report --summary` writes it).",
              f"- `records/`: the {_n(n_records, 'run record')} (JSON), at their paths under the results folder.",
              "- `environment.txt`: the Python packages that made the bundle (`python -m pip freeze`).",
              f"- {source}", "",
              "## Rebuilding and comparing", "",
              "Unpack the source and run the workflow with this config (`make report` alone uses the source's own "
              "config.yaml):", "",
              "    mkdir source && tar -xf source.tar -C source && cd source",
              "    make env && .venv/bin/snakemake --cores all --resources gpu=1 --configfile ../config.yaml -- report",
              "",
              "The new records land under the config's `results:` folder; `stylelab compare` sets them beside this "
              "bundle's `records/` (`stylelab compare --help`).", "",
              "## Files", "", "```", *members, "```"]
    return "\n".join(lines) + "\n"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def write_bundle(results: str | os.PathLike, out: str | os.PathLike | None = None,
                 configs: Sequence[str] = ("config.yaml",), repo: str | os.PathLike = ".") -> Path:
    """Pack the finished run under `results` into the zip `out` (default: the config's bundle.name, else
    stylelab-<commit>.zip, in `results`); `configs` are the config files the run used, in order; `repo` the git
    checkout that holds the records' commit. Returns the zip's path."""
    results = Path(results)
    config, records = _checked(results, configs)
    commit, warnings = source_commit(records.values(), repo)
    report, summary = results / "report", results / "report" / SUMMARY
    members = {"config.yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode()}
    members.update({f"report/{name}": (report / name).read_bytes() for name in REPORT_FILES})
    members.update({"summary.json": summary.read_bytes()} if summary.is_file() else {})
    members.update({f"records/{path}": (results / path).read_bytes() for path in records})
    members["environment.txt"] = pip_freeze()
    source = _git(repo, "archive", "--format=tar", commit) if commit else None
    members.update({"source.tar": source} if source is not None else {})
    text = readme(config, configs, commit, warnings, ["README.md", *members])
    name = (config.get("bundle") or {}).get("name") or f"stylelab-{commit[:12] if commit else 'results'}"
    out = Path(out) if out is not None else results / (name if name.endswith(".zip") else name + ".zip")
    write_bytes_atomic(out, _zip({"README.md": text.encode(), **members}))
    return out
