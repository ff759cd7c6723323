"""The package's architecture is checked, not described: the contracts of .importlinter hold, and the commands
that only describe or read runs start and work where torch cannot be imported."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "diffusers", "transformers")
# `stylelab ARGS...` in a Python where importing any of HEAVY fails.
WITHOUT_TORCH = f"""
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} cannot be imported in this test")

sys.meta_path.insert(0, Refuse())
from stylelab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_torch(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_the_import_contracts_hold():
    """Layers in order (cli > report | diffusion > engine > run > spec), spec and report free of torch,
    diffusers and transformers, and no import circle inside any package."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), str(ROOT / ".importlinter"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_the_refusing_interpreter_refuses_torch():
    done = without_torch("invert", "--content", "x.png", "--layer", "conv_1", "--out", "never")
    assert done.returncode != 0 and "torch cannot be imported in this test" in done.stderr


def test_help_layers_figures_the_report_and_the_bundle_need_no_torch(run_cli, cat, tmp_path):
    done = without_torch("--help")
    assert done.returncode == 0 and "COMMAND" in done.stdout, done.stderr
    done = without_torch("layers")
    assert done.returncode == 0 and done.stdout.splitlines()[10].split() == ["conv_5", "conv3_1"], done.stderr
    records = []
    for layer in ("conv_1", "relu_1"):  # the runs themselves need torch: made in this process
        code, _, err = run_cli("invert", "--content", cat, "--layer", layer, "--size", "32", "--steps", "2",
                               "--device", "cpu", "--quiet", "--out", tmp_path / layer)
        assert code == 0, err
        records.append(tmp_path / layer / "record.json")
    grid = tmp_path / "figures" / "inversion_grid.png"
    done = without_torch("figure", "layer-grid", *records, "--out", grid)
    assert done.returncode == 0 and grid.read_bytes().startswith(b"\x89PNG"), done.stderr
    manifest = {"sections": [{"id": "inversion", "figures": [str(grid)], "records": list(map(str, records))}]}
    html = tmp_path / "report" / "report.html"
    done = without_torch("report", "--manifest", json.dumps(manifest), "--html", html, cwd=tmp_path)
    assert done.returncode == 0 and 'id="inversion"' in html.read_text(), done.stderr
    (tmp_path / "report" / "report.pdf").write_bytes(b"%PDF")
    (tmp_path / "run.yaml").write_text(f"results: {json.dumps(str(tmp_path))}\n")
    done = without_torch("bundle", "--results", tmp_path, "--config", "run.yaml", "--out", "run.zip", cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "run.zip").is_file(), done.stderr
