"""Reading, resizing and writing images as float tensors of shape (1, 3, H, W) in [0, 1]."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import StylelabError

# A truncated file must be an error, never a silently half-grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False

Size = int | Sequence[int] | None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited over white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit greyscale: PIL's own convert("RGB") clips at 255, so rescale by hand.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(np.round(arr * (255.0 if arr.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file fully (PNG, JPEG or anything PIL reads) and return it as RGB.

    Raises StylelabError naming the file for a missing, unreadable, truncated or non-image file.
    """
    path = Path(path)
    if not path.exists():
        raise StylelabError(f"image not found: {path}. Check the path (it is relative to the current folder).")
    if path.is_dir():
        raise StylelabError(f"image path is a folder, not a file: {path}.")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = _to_rgb(img)
    except UnidentifiedImageError:
        raise StylelabError(f"not an image file: {path}. Give a PNG or JPEG image.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise StylelabError(f"cannot read image {path} (damaged or truncated: {exc}). "
                            "Replace it with a complete PNG or JPEG file.") from None
    if min(rgb.size) < 1:
        raise StylelabError(f"image {path} is empty ({rgb.size[0]} x {rgb.size[1]}).")
    return rgb


def short_side_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(height, width) with the short side at `short`, as torchvision's Resize(int) computes it."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def resize(img: Image.Image, size: Size) -> Image.Image:
    """Resize: None keeps the size, an int sets the short side, (height, width) sets both."""
    if size is None:
        return img
    if isinstance(size, int):
        if size < 1:
            raise StylelabError(f"image size must be a positive number of pixels, got {size}.")
        height, width = short_side_size(img.width, img.height, size)
    else:
        height, width = (int(s) for s in size)
    if (width, height) == img.size:
        return img
    return img.resize((width, height), Image.BILINEAR)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.array(img, dtype=np.uint8)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def load_image(path: str | os.PathLike, size: Size = None) -> torch.Tensor:
    """Read an image and return a (1, 3, H, W) float tensor in [0, 1], resized as `resize` says."""
    return pil_to_tensor(resize(read_image(path), size))


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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_png(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> None:
    write_bytes_atomic(path, png_bytes(image))
