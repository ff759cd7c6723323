"""Image reading in every common mode, resizing, PNG writing, and clear errors for bad files."""

import numpy as np
import pytest
import torch
from PIL import Image

from stylelab.engine import images
from stylelab.spec import files
from stylelab.spec.errors import StylelabError


def _check_rgb(t: torch.Tensor, h: int, w: int):
    assert t.shape == (1, 3, h, w) and t.dtype == torch.float32
    assert 0.0 <= t.min() and t.max() <= 1.0


@pytest.mark.parametrize("mode", ["L", "1", "RGB", "RGBA", "LA", "P", "CMYK", "I", "F"])
def test_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    suffix = {"CMYK": "jpg", "I": "tiff", "F": "tiff"}.get(mode, "png")
    path = tmp_path / f"x.{suffix}"
    img.save(path)
    _check_rgb(images.load_image(path), 10, 20)


def test_16_bit_greyscale_is_rescaled(tmp_path):
    arr = np.tile(np.array([[0, 32768, 65535]], dtype=np.uint16), (8, 3))  # 8 x 9: above the minimum side
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    t = images.load_image(path)
    _check_rgb(t, 8, 9)
    assert t[0, 0, 0, :3].tolist() == pytest.approx([0.0, 128 / 255, 1.0])


def test_transparency_is_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    assert images.load_image(path).min().item() == 1.0


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    assert images.load_image(path).min().item() == 1.0


def test_jpeg_and_png_samples(cat, picasso):
    _check_rgb(images.load_image(cat), 300, 451)
    _check_rgb(images.load_image(picasso), 600, 468)


def test_short_side_resize_as_torchvision(cat, picasso):
    assert images.load_image(cat, 128).shape[-2:] == (128, 192)  # 451 x 300 -> int(128 * 451 / 300) = 192
    assert images.load_image(picasso, 128).shape[-2:] == (164, 128)  # 468 x 600 -> int(128 * 600 / 468) = 164


def test_exact_resize(picasso):
    assert images.load_image(picasso, (128, 192)).shape[-2:] == (128, 192)


def test_pixel_limits_are_checked_from_the_header(tmp_path, cat):
    # 451 x 300 = 135300 pixels: refused under a lower limit, read under this one, and with no limit at all.
    with pytest.raises(StylelabError, match="above the limit of 0.1 megapixels"):
        files.read_image(cat, max_pixels=100_000)
    assert files.read_image(cat, max_pixels=135_300).size == (451, 300)
    assert files.read_image(cat, max_pixels=None).size == (451, 300)
    # The limit holds for the resized image too, so a huge size cannot allocate gigabytes.
    with pytest.raises(StylelabError, match="at size 1000 the image .* becomes 1503 x 1000 pixels"):
        images.load_image(cat, 1000, max_pixels=1_000_000)


def test_tiny_images_are_refused(tmp_path):
    path = tmp_path / "thin.png"
    Image.new("RGB", (100, 7)).save(path)
    with pytest.raises(StylelabError, match="only 100 x 7 pixels"):
        files.read_image(path)
    assert files.read_image(path, min_side=1).size == (100, 7)


def test_png_round_trip_is_exact(tmp_path, cat):
    t = images.load_image(cat, 32)
    images.save_png(t, tmp_path / "a.png")
    assert torch.equal(images.load_image(tmp_path / "a.png"), t)
    assert not list(tmp_path.glob(".*tmp*"))


def test_missing_image(tmp_path):
    with pytest.raises(StylelabError, match="image not found"):
        images.load_image(tmp_path / "nope.png")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("this is not an image\n")
    with pytest.raises(StylelabError, match="not an image file"):
        images.load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, cat, fmt):
    full = tmp_path / f"full.{fmt.lower()}"
    Image.open(cat).convert("RGB").save(full, format=fmt)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(StylelabError, match="damaged or truncated"):
        images.load_image(cut)
