"""Images as float tensors of shape (1, 3, H, W) in [0, 1]: from pixels read by stylelab.spec.files, to PNG."""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image

from stylelab.spec.files import Size, load_pixels, write_bytes_atomic
from stylelab.spec.settings import DEFAULT_MAX_PIXELS


def pixels_to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def load_image(path: str | os.PathLike, size: Size = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an image (stylelab.spec.files.load_pixels) as a (1, 3, H, W) float tensor in [0, 1]."""
    return pixels_to_tensor(load_pixels(path, size, max_pixels))


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError("tensor_to_pil takes one image, got a batch of %d" % image.shape[0])
        image = image[0]
    arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, mode="RGB")


def png_bytes(image: torch.Tensor | Image.Image) -> bytes:
    """Encode as PNG deterministically (no timestamps or text chunks)."""
    pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def save_png(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> None:
    write_bytes_atomic(path, png_bytes(image))
