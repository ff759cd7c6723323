"""Files on disk: written whole or not at all, known by their SHA-256, and images read safely (PIL, no torch)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from stylelab.spec.errors import StylelabError
from stylelab.spec.settings import DEFAULT_MAX_PIXELS


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


def file_digest(path: str | os.PathLike | None) -> str | None:
    """SHA-256 of a file's bytes (None when there is no such file)."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# A truncated file must be an error, never a silently half-grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False

Size = int | Sequence[int] | None

# Below this on either side an image is almost surely a mistake (an icon, a placeholder, a 1 x 1 tracking
# pixel): blown up to the working size it is a few flat colours, with no content or texture to transfer.
MIN_SIDE = 8


def to_rgb(img: Image.Image) -> Image.Image:
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


@contextmanager
def _open_checked(path: Path, max_pixels: int | None, min_side: int):
    """The image opened, its size checked from the header, before decoding."""
    with warnings.catch_warnings():
        # PIL warns above its own limit (89 megapixels); ours is the one that counts, and is checked here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            width, height = img.width, img.height
            if max_pixels is not None and width * height > max_pixels:
                raise StylelabError(f"image {path} is {width} x {height} pixels ({width * height / 1e6:.3g} "
                                    f"megapixels), above the limit of {max_pixels / 1e6:g} megapixels. Shrink it "
                                    "first, or raise the limit (--max-pixels, or jobs.max_pixels in the workflow's "
                                    "config).")
            if min(width, height) < min_side:
                raise StylelabError(f"image {path} is only {width} x {height} pixels; an input image needs at "
                                    f"least {min_side} pixels on each side (a smaller one is a few flat colours "
                                    "once resized).")
            yield img


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               min_side: int = MIN_SIDE) -> Image.Image:
    """Open an image file fully (anything PIL reads) as RGB. Its size is checked from the header, before decoding;
    a StylelabError names the file for a missing, unreadable, truncated, too large or too small one."""
    path = Path(path)
    if not path.exists():
        raise StylelabError(f"image not found: {path}. Check the path (it is relative to the current folder).")
    if path.is_dir():
        raise StylelabError(f"image path is a folder, not a file: {path}.")
    try:
        with _open_checked(path, max_pixels, min_side) as img:
            img.load()
            rgb = to_rgb(img)
    except Image.DecompressionBombError as exc:
        # Twice PIL's limit: PIL refuses to even open it, whatever our limit says.
        raise StylelabError(f"image {path} is far too large to open ({exc}). Shrink it first.") from None
    except UnidentifiedImageError:
        raise StylelabError(f"not an image file: {path}. Give a PNG or JPEG image.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise StylelabError(f"cannot read image {path} (damaged or truncated: {exc}). "
                            "Replace it with a complete PNG or JPEG file.") from None
    return rgb


def check_image_file(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, from its header alone, what read_image would, in one sentence naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise StylelabError(f"{path} does not exist: fix the path (it is relative to the folder the workflow runs "
                            "in) or put the image there.")
    if not path.is_file():
        raise StylelabError(f"{path} is a folder, not an image file: name a PNG or JPEG file.")
    try:
        with _open_checked(path, max_pixels, MIN_SIDE):
            pass
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        kind = "not an image file" if isinstance(exc, UnidentifiedImageError) else f"unreadable ({exc})"
        raise StylelabError(f"{path} is {kind}: name a PNG or JPEG image.") from None


def target_size(img: Image.Image, size: Size) -> tuple[int, int]:
    """(height, width) that `resize` gives `img`: an int is the short side, as torchvision's Resize(int) does."""
    if size is None:
        return img.height, img.width
    if isinstance(size, int):
        if size < 1:
            raise StylelabError(f"image size must be a positive number of pixels, got {size}.")
        if img.width <= img.height:
            return int(size * img.height / img.width), size
        return size, int(size * img.width / img.height)
    height, width = (int(s) for s in size)
    return height, width


def resize(img: Image.Image, size: Size) -> Image.Image:
    """Resize: None keeps the size, an int sets the short side, (height, width) sets both."""
    height, width = target_size(img, size)
    if (width, height) == img.size:
        return img
    return img.resize((width, height), Image.BILINEAR)


def load_pixels(path: str | os.PathLike, size: Size = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 pixels, resized as `resize` says; the pixel limit holds after resizing too."""
    img = read_image(path, max_pixels)
    height, width = target_size(img, size)
    if max_pixels is not None and height * width > max_pixels:
        raise StylelabError(f"at size {size} the image {path} becomes {width} x {height} pixels "
                            f"({width * height / 1e6:.3g} megapixels), above the limit of {max_pixels / 1e6:g} "
                            "megapixels. Use a smaller --size, or raise the limit (--max-pixels).")
    return np.array(resize(img, size), dtype=np.uint8)


def small_png(path: str | os.PathLike, width: int, max_bytes: int) -> bytes:
    """A figure made small for a README: at most `width` pixels wide and `max_bytes` long (narrowed, then reduced
    to a 256-colour palette, then narrowed further)."""
    img = read_image(path)
    while True:
        if img.width > width:
            img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.LANCZOS)
        for candidate in (img, img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)):
            buffer = io.BytesIO()
            candidate.save(buffer, format="PNG", optimize=True)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        if width < 200:
            raise StylelabError(f"{path} does not fit in {max_bytes} bytes even at {width} pixels wide.")
        width = int(width * 0.8)
