"""The losses against values computed by hand."""

import pytest
import torch

from stylelab.engine.losses import (Objective, channel_mean_var, content_loss, gram_loss, gram_matrix, mean_var_loss,
                             total_variation)


def test_gram_matrix_by_hand():
    # Two channels of two pixels: F = [[1, 2], [3, 4]]; F F^T = [[5, 11], [11, 25]]; divided by c*h*w = 4.
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    assert torch.equal(gram_matrix(f), torch.tensor([[[1.25, 2.75], [2.75, 6.25]]]))


def test_gram_loss_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    # MSE of the Gram above against zeros: (1.25^2 + 2 * 2.75^2 + 6.25^2) / 4 = 13.9375
    assert gram_loss(f, torch.zeros(1, 2, 2)).item() == pytest.approx(13.9375)
    assert gram_loss(f, gram_matrix(f)).item() == 0.0


def test_gram_matches_tutorial_formula_for_batch_of_one():
    torch.manual_seed(0)
    f = torch.randn(1, 8, 5, 7)
    a, b, c, d = f.shape
    flat = f.view(a * b, c * d)
    tutorial = flat @ flat.t() / (a * b * c * d)
    assert torch.allclose(gram_matrix(f)[0], tutorial, rtol=1e-6, atol=1e-7)


def test_mean_var_by_hand():
    # Channel 0: [1, 2, 3] -> mean 2, unbiased variance 1. Channel 1: [2, 4, 9] -> mean 5, variance 13.
    f = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 9.0]]).view(1, 2, 1, 3)
    mean, var = channel_mean_var(f)
    assert torch.equal(mean, torch.tensor([[2.0, 5.0]]))
    assert torch.allclose(var, torch.tensor([[1.0, 13.0]]))
    # Against mean [1, 5] and variance [1, 1]: (1 + 0)/2 + (0 + 144)/2 = 72.5
    loss = mean_var_loss(f, torch.tensor([[1.0, 5.0]]), torch.tensor([[1.0, 1.0]]))
    assert loss.item() == pytest.approx(72.5)


def test_content_loss_is_mse():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    assert content_loss(x, torch.zeros_like(x)).item() == pytest.approx(7.5)


def test_total_variation_by_hand():
    img = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    # horizontal differences |1 - 0| twice -> mean 1; vertical differences 0 -> 0
    assert total_variation(img).item() == pytest.approx(1.0)


def test_objective_weights_and_reports_every_layer():
    torch.manual_seed(1)
    target = {"a": torch.randn(1, 4, 3, 3), "b": torch.randn(1, 4, 3, 3)}
    current = {k: torch.randn_like(v) for k, v in target.items()}
    obj = Objective("meanvar", content_weight=2.0, style_weight=10.0)
    obj.set_content({"a": target["a"]})
    obj.set_style({"a": target["a"], "b": target["b"]})
    total, parts = obj(current)
    expected = 2.0 * content_loss(current["a"], target["a"]) + 10.0 * (
        mean_var_loss(current["a"], *channel_mean_var(target["a"]))
        + mean_var_loss(current["b"], *channel_mean_var(target["b"])))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts["content"]) == {"a"} and set(parts["style"]) == {"a", "b"}
    assert parts["tv"] is None


def test_gram_backward_matches_autograd_of_the_plain_product():
    from stylelab.engine.losses import _Gram

    features = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: _Gram.apply(f.reshape(2, 5, 12), 60), (features,))
    target = torch.randn(2, 5, 5, dtype=torch.float64)
    flat = features.reshape(2, 5, 12)
    plain = torch.nn.functional.mse_loss(torch.bmm(flat, flat.transpose(1, 2)) / 60, target)
    (expected,) = torch.autograd.grad(plain, features)
    (got,) = torch.autograd.grad(torch.nn.functional.mse_loss(gram_matrix(features), target), features)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", [(1, 16, 9, 7), (3, 5, 4, 6)])
def test_channels_last_features_give_the_same_losses_and_gradients(shape):
    """The bf16 network hands back channels-last features, which the Gram, MeanVar and content losses read in
    that layout (own kernels): values and gradients as for the same features laid out plainly (float64)."""
    torch.manual_seed(0)
    plain = torch.randn(*shape, dtype=torch.float64)
    last = plain.contiguous(memory_format=torch.channels_last)
    target = torch.randn(*shape, dtype=torch.float64)
    target_last = target.contiguous(memory_format=torch.channels_last)
    assert not last.is_contiguous()  # the layout really differs
    gram_target = torch.randn(shape[0], shape[1], shape[1])
    mean_target, var_target = torch.randn(shape[:2]), torch.rand(shape[:2])
    terms = {
        "gram": lambda f, t: gram_loss(f, gram_target.double()),
        "meanvar": lambda f, t: mean_var_loss(f, mean_target.double(), var_target.double()),
        "content": lambda f, t: content_loss(f, t),
    }
    for name, term in terms.items():
        a = plain.clone().requires_grad_(True)
        b = last.clone().requires_grad_(True)
        value_a, value_b = term(a, target), term(b, target_last)
        value_a.backward()
        value_b.backward()
        assert torch.allclose(value_a, value_b, rtol=1e-12, atol=0), name
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14), name
        assert torch.autograd.gradcheck(lambda f: term(f, target_last), (last.clone().requires_grad_(True),)), name
    mean, var = channel_mean_var(last)
    var_ref, mean_ref = torch.var_mean(plain, dim=(2, 3), correction=1)
    assert torch.allclose(mean, mean_ref, rtol=1e-12) and torch.allclose(var, var_ref, rtol=1e-12)
    assert torch.allclose(gram_matrix(last), gram_matrix(plain), rtol=1e-12)
