"""Shared fixtures: the sample images of data/, tiny Part 1 settings, the stand-in diffusion models, and a helper
that runs the CLI in-process. Also which tests are `slow` (left out of `make test-quick`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

# Tests never touch the network or a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The sample images of data/ (data/CREDITS.md), by the names the tests use.
IMAGES = {"cat": DATA / "content" / "cat.png", "picasso": DATA / "style" / "picasso_selfport1907.jpg",
          "starry": DATA / "style" / "starry_night.jpg"}


@pytest.fixture(scope="session")
def cat() -> Path:
    return IMAGES["cat"]


@pytest.fixture(scope="session")
def picasso() -> Path:
    return IMAGES["picasso"]


@pytest.fixture(scope="session")
def starry() -> Path:
    return IMAGES["starry"]


@pytest.fixture(scope="session")
def tiny_settings():
    """tiny_settings(**changes): TransferSettings of a tiny run: the cat and the Picasso at 32 px, steps (6, 12), on
    the CPU in fp32 (the same numbers on every machine), with random VGG-19 weights (seeded; they build faster
    than the embedded ones). A test whose outcome depends on what the real network sees passes weights="caffe"."""
    from stylelab.spec.settings import TransferSettings

    base = dict(content=str(IMAGES["cat"]), style=str(IMAGES["picasso"]), size=32, steps=(6, 12), device="cpu",
                precision="fp32", weights="random")
    return lambda **changes: TransferSettings(**{**base, **changes})


@pytest.fixture(scope="session")
def stand_in():
    """stand_in(name="embedded-sd", seed=0, image_size=None): a stand-in diffusion model (random weights from the
    seed; embedded-sd at 64 px, embedded-ddpm at 32 px unless image_size says otherwise), built anew for each
    use: sampling casts a pipeline's modules to the run's precision in place, so a shared one would carry one
    test's bf16 into the next. Building one takes less than a tenth of a second."""
    from stylelab.diffusion import models

    def build(name: str = "embedded-sd", seed: int = 0, image_size: int | None = None):
        return models.STAND_INS[name](seed=seed, **({} if image_size is None else {"image_size": image_size}))

    return build


@pytest.fixture
def run_cli(capsys):
    """Run `stylelab ARGS` in this process; returns (exit code, stdout, stderr)."""
    from stylelab.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# Modules that are slow as a whole (Snakemake runs of the preview, a Slurm cluster, the between-workflow cache):
# marked here, by module, since other work edits them. Elsewhere a test is marked where it is written.
SLOW_MODULES = {"test_workflow", "test_slurm", "test_cache"}


def pytest_collection_modifyitems(config, items):
    """`slow` on every test of SLOW_MODULES: `make test-quick` (pytest -m "not slow") leaves them out."""
    for item in items:
        if item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
