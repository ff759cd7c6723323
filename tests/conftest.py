"""Shared fixtures: the sample images of data/ and a helper that runs the CLI in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

# Tests never touch the network or a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def cat() -> Path:
    return DATA / "content" / "cat.png"


@pytest.fixture(scope="session")
def picasso() -> Path:
    return DATA / "style" / "picasso_selfport1907.jpg"


@pytest.fixture
def run_cli(capsys):
    """Run `stylelab ARGS` in this process; returns (exit code, stdout, stderr)."""
    from stylelab.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
