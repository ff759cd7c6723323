"""Colour preservation, both ways of Gatys et al., "Preserving Color in Neural Artistic Style Transfer" (2016).

match       the style image takes the content's RGB mean and covariance before the transfer, by
            x -> A (x - mu_s) + mu_c with A = Sigma_c^(1/2) Sigma_s^(-1/2); not clipped to [0, 1], as clipping
            would move those statistics again.
luminance   the transfer runs on luminance (Y of YIQ), the style's matched to the content's mean and std;
            the output is it with the content's I and Q, the luminance (not the colour) clamped so that all
            three channels stay in [0, 1].

Everything here works on (B, 3, H, W) RGB tensors in [0, 1] (luminance: (B, 1, H, W)); statistics in float64.
"""

from __future__ import annotations

import torch


# NTSC YIQ from RGB (the rows give Y, I, Q); its inverse maps back.
YIQ_FROM_RGB = torch.tensor([[0.299, 0.587, 0.114],
                             [0.595716, -0.274453, -0.321263],
                             [0.211456, -0.522591, 0.311135]], dtype=torch.float64)
RGB_FROM_YIQ = torch.linalg.inv(YIQ_FROM_RGB)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A 3 x 3 colour matrix applied to every pixel of (B, 3, H, W)."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(image.dtype).to(image.device), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return _apply(YIQ_FROM_RGB, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Y of YIQ: (B, 3, H, W) -> (B, 1, H, W)."""
    return rgb_to_yiq(image)[:, :1]


def colour_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean (C,) and covariance (C, C) over every pixel of a (1, C, H, W) image, in float64."""
    flat = image.detach().to(torch.float64).reshape(image.shape[1], -1)
    mean = flat.mean(1)
    centred = flat - mean[:, None]
    return mean, centred @ centred.T / flat.shape[1]


def _sqrt_psd(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The symmetric square root of a covariance (or of its inverse); eigenvalues below 1e-10 are lifted
    there, so a flat image (one colour) does not divide by zero."""
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(1e-10) ** (-0.5 if inverse else 0.5)) @ vectors.T


def match_colours(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image with the content image's per-channel mean and covariance (in RGB)."""
    mean_s, cov_s = colour_stats(style)
    mean_c, cov_c = colour_stats(content)
    a = _sqrt_psd(cov_c) @ _sqrt_psd(cov_s, inverse=True)
    flat = style.to(torch.float64).reshape(3, -1)
    matched = a @ (flat - mean_s[:, None]) + mean_c[:, None]
    return matched.reshape(style.shape).to(style.dtype)


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """The style's luminance with the content's mean and standard deviation (the paper's luminance transfer)."""
    s, c = style_y.to(torch.float64), content_y.to(torch.float64)
    std_s = s.std(correction=0).clamp_min(1e-12)
    return ((s - s.mean()) * (c.std(correction=0) / std_s) + c.mean()).to(style_y.dtype)


def with_content_colour(y: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """RGB with luminance `y` (B, 1, H, W) and the content's I and Q; y is clamped per pixel to where all
    three channels stay in [0, 1] (an interval that holds the content's own luminance, so never empty)."""
    yiq = rgb_to_yiq(content.to(torch.float64))
    chroma = yiq.clone()
    chroma[:, :1] = 0
    offsets = _apply(RGB_FROM_YIQ, chroma)  # RGB = Y + offset per channel (the first column of RGB_FROM_YIQ is all 1)
    low = (-offsets).amax(1, keepdim=True)
    high = (1 - offsets).amin(1, keepdim=True)
    y = torch.minimum(torch.maximum(y.to(torch.float64), low), high)
    return (y + offsets).clamp(0, 1).to(content.dtype)
