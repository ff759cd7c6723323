"""The layers of VGG-19's convolutional part, by name: the tutorial's (conv_i, relu_i, pool_i after conv_i) and
VGG's canonical ones (conv3_1, relu4_2, pool5), both accepted everywhere. Imports nothing heavy (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

from stylelab.spec.errors import StylelabError

# Output channels of the 16 convolutions, "M" for a 2x2 max pool.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


@dataclass(frozen=True)
class Layer:
    index: int  # position in torchvision's vgg19().features (0..36)
    kind: str  # conv | relu | pool
    name: str  # tutorial name, conv_5
    canonical: str  # conv3_1
    conv_index: int  # 0-based index of the convolution this layer belongs to (for pools: the one before)
    block: int  # VGG's block (1..5)
    in_channels: int  # channels into the layer
    channels: int  # channels out of it


def _build_layers() -> tuple[Layer, ...]:
    """The one walk over the network's configuration; everything else reads its result."""
    layers, conv_i, block, in_block, index, channels = [], 0, 1, 0, 0, 3
    for item in _CFG:
        if item == "M":
            layers.append(Layer(index, "pool", f"pool_{conv_i}", f"pool{block}", conv_i - 1, block, channels, channels))
            index += 1
            block, in_block = block + 1, 0
            continue
        conv_i, in_block = conv_i + 1, in_block + 1
        layers.append(Layer(index, "conv", f"conv_{conv_i}", f"conv{block}_{in_block}", conv_i - 1, block,
                            channels, item))
        layers.append(Layer(index + 1, "relu", f"relu_{conv_i}", f"relu{block}_{in_block}", conv_i - 1, block,
                            item, item))
        index += 2
        channels = item
    return tuple(layers)


LAYERS: tuple[Layer, ...] = _build_layers()
CONVS: tuple[Layer, ...] = tuple(layer for layer in LAYERS if layer.kind == "conv")
LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in LAYERS)
CANONICAL_NAMES: tuple[str, ...] = tuple(layer.canonical for layer in LAYERS)
_BY_NAME = {layer.name: layer for layer in LAYERS} | {layer.canonical: layer for layer in LAYERS}
POOL_NAMES = tuple(layer.name for layer in LAYERS if layer.kind == "pool")

# The tutorial's defaults (PyTorch "Neural Transfer"): content conv_4, style conv_1 .. conv_5.
TUTORIAL_CONTENT_LAYERS = ("conv_4",)
TUTORIAL_STYLE_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5")


def resolve_layer(name: str) -> Layer:
    """Look a layer up by tutorial or canonical name; an unknown name is an error listing the valid ones."""
    layer = _BY_NAME.get(str(name).strip())
    if layer is not None:
        return layer
    text = str(name)
    if text.startswith("pool_"):
        raise StylelabError(f"unknown VGG-19 layer '{text}': a pool takes the number of the convolution before it, "
                            f"so the pools are {', '.join(POOL_NAMES)} (canonical pool1 .. pool5).")
    raise StylelabError(f"unknown VGG-19 layer '{text}'. Valid layers: {', '.join(LAYER_NAMES)}; or the canonical "
                        f"names {', '.join(CANONICAL_NAMES)}.")


def tutorial_name(name: str) -> str:
    return resolve_layer(name).name
