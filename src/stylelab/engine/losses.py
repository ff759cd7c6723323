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

from stylelab.spec.settings import STYLE_LOSSES


class _Gram(torch.autograd.Function):
    """G = F F^T / n with a backward of one matrix product, (dG + dG^T) F / n, where autograd does two
    (dG F and dG^T F, then a sum): about a twelfth of a style-transfer step on a CPU."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, n: int) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.n = n
        return torch.bmm(flat, flat.transpose(1, 2)) / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat) / ctx.n, None


class _GramChannelsLast(torch.autograd.Function):
    """`_Gram` for channels-last features (the bf16 network's): G = X^T X / n of the (B, H*W, C) view X, as
    reshaping to (B, C, H*W) would copy each map and add gradients of two layouts (a slow strided add)."""

    @staticmethod
    def forward(ctx, flat_t: torch.Tensor, n: int) -> torch.Tensor:
        ctx.save_for_backward(flat_t)
        ctx.n = n
        return torch.bmm(flat_t.transpose(1, 2), flat_t).div_(n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (flat_t,) = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)).div_(ctx.n)
        if flat_t.shape[0] == 1:  # one image: mm writes the large (H*W, C) result faster than bmm
            return torch.mm(flat_t[0], sym[0]).unsqueeze(0), None
        return torch.bmm(flat_t, sym), None


def is_channels_last(features: torch.Tensor) -> bool:
    """A (B, C, H, W) tensor laid out channels-last and not also plainly contiguous (C or H*W of 1)."""
    return (features.dim() == 4 and not features.is_contiguous()
            and features.is_contiguous(memory_format=torch.channels_last))


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrices, each divided by C*H*W."""
    b, c, h, w = features.shape
    if is_channels_last(features):
        return _GramChannelsLast.apply(features.permute(0, 2, 3, 1).reshape(b, h * w, c), c * h * w)  # a view
    return _Gram.apply(features.reshape(b, c, h * w), c * h * w)


class _MeanVarChannelsLast(torch.autograd.Function):
    """Per-channel mean and unbiased variance of a (B, H*W, C) view, two passes, with a backward of one.

    torch.var_mean and its backward take about five times as long on these maps (either layout)."""

    @staticmethod
    def forward(ctx, flat_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = flat_t.shape[1]
        mean = flat_t.sum(1, keepdim=True) / n
        diff = flat_t - mean
        ctx.save_for_backward(diff)
        return mean.squeeze(1), (diff * diff).sum(1) / (n - 1)

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor):
        (diff,) = ctx.saved_tensors
        n = diff.shape[1]
        return (grad_mean / n).unsqueeze(1) + diff * (2 * grad_var / (n - 1)).unsqueeze(1)


def channel_mean_var(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance over H and W: two (B, C) tensors."""
    if is_channels_last(features):
        b, c, h, w = features.shape
        return _MeanVarChannelsLast.apply(features.permute(0, 2, 3, 1).reshape(b, h * w, c))
    var, mean = torch.var_mean(features, dim=(2, 3), correction=1)
    return mean, var


class _MeanSquaredError(torch.autograd.Function):
    """mean((a - b)^2) of channels-last tensors as one difference and one dot product, backward one scaled
    copy: torch's MSE is several times slower on them (its backward walks the strides)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        diff = (a - b).permute(0, 2, 3, 1)  # plainly contiguous for channels-last inputs: a flat view
        ctx.save_for_backward(diff)
        flat = diff.reshape(-1)
        return torch.dot(flat, flat) / flat.numel()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (diff,) = ctx.saved_tensors
        return (diff * (2 * grad / diff.numel())).permute(0, 3, 1, 2), None


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if is_channels_last(features) and is_channels_last(target):
        return _MeanSquaredError.apply(features, target)
    return F.mse_loss(features, target)


def gram_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(gram_matrix(features), target_gram)


def mean_var_loss(features: torch.Tensor, target_mean: torch.Tensor, target_var: torch.Tensor) -> torch.Tensor:
    mean, var = channel_mean_var(features)
    return F.mse_loss(mean, target_mean) + F.mse_loss(var, target_var)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, horizontally plus vertically."""
    return (image[..., :, 1:] - image[..., :, :-1]).abs().mean() + (image[..., 1:, :] - image[..., :-1, :]).abs().mean()


def style_target(features: torch.Tensor, style_loss: str):
    """The statistics a style loss compares against, computed once from the style image's features."""
    if style_loss == "gram":
        return (gram_matrix(features).detach(),)
    if style_loss == "meanvar":
        mean, var = channel_mean_var(features)
        return (mean.detach(), var.detach())
    raise ValueError(f"unknown style loss {style_loss!r}; choose one of {STYLE_LOSSES}")


def blend_targets(targets: list[dict[str, tuple]], weights: list[float]) -> dict[str, tuple]:
    """Style targets of several images mixed per layer: each statistic sum_i w_i t_i (Gram matrices, or means
    and variances). One image of weight 1 is its own targets, untouched."""
    if len(targets) == 1 and weights[0] == 1.0:
        return targets[0]
    blended = {}
    for name in targets[0]:
        parts = zip(*(t[name] for t in targets))  # per statistic: its value for each image
        blended[name] = tuple(sum(w * value for w, value in zip(weights, values)) for values in parts)
    return blended


def style_distance(features: torch.Tensor, target: tuple, style_loss: str) -> torch.Tensor:
    if style_loss == "gram":
        return gram_loss(features, *target)
    if style_loss == "meanvar":
        return mean_var_loss(features, *target)
    raise ValueError(f"unknown style loss {style_loss!r}; choose one of {STYLE_LOSSES}")


@dataclass
class Objective:
    """Weighted sum of content, style and total-variation terms over named layers, against targets set once;
    a call returns the total and every per-layer value, unweighted."""

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

    def set_style(self, features: dict[str, torch.Tensor] | list[dict[str, torch.Tensor]],
                  weights: list[float] | None = None) -> None:
        """The style targets from one style image's features, or from several blended with `weights`."""
        if isinstance(features, dict):
            features, weights = [features], [1.0]
        per_image = [{name: style_target(f, self.style_loss) for name, f in own.items()} for own in features]
        self.style_targets = blend_targets(per_image, list(weights))

    def __call__(self, features: dict[str, torch.Tensor], image: torch.Tensor | None = None):
        content = {name: content_loss(features[name], t) for name, t in self.content_targets.items()}
        style = {name: style_distance(features[name], t, self.style_loss) for name, t in self.style_targets.items()}
        total = features[next(iter(features))].new_zeros(())
        for weight, terms in ((self.content_weight, content), (self.style_weight, style)):
            if terms:
                total = total + weight * torch.stack(list(terms.values())).sum()
        tv = None
        if self.tv_weight and image is not None:
            tv = total_variation(image)
            total = total + self.tv_weight * tv
        return total, {"content": content, "style": style, "tv": tv}


class StyleDistances:
    """Gram and MeanVar distances (unweighted, summed over layers) to one style image's features, or to several
    images' blended statistics: one VGG forward scores an image by both losses."""

    def __init__(self, style_features: dict[str, torch.Tensor] | list[dict[str, torch.Tensor]],
                 weights: list[float] | None = None):
        self.objectives = {}
        for loss in STYLE_LOSSES:
            self.objectives[loss] = Objective(loss, content_weight=0.0, style_weight=1.0)
            self.objectives[loss].set_style(style_features, weights)

    def __call__(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {loss: objective(features)[0] for loss, objective in self.objectives.items()}
