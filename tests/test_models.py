"""Fusion models (mmlib.models): output shapes, masking semantics, zero-filling, decision-layer split, contributions."""
import pytest
import torch

from mmlib import models

M, D = 3, 16


def _inputs(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, M, D, generator=g)
    mask = torch.rand(n, M, generator=g) > 0.4
    mask[:, 0] = True
    return x, mask


@pytest.mark.parametrize("name", models.NEURAL_MODELS)
def test_every_model_gives_one_logit_per_sample(name):
    torch.manual_seed(0)
    net = models.build_model(name, M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    out = net(x, mask)
    assert out.shape == (32,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resilient", "late", "linear"])
def test_a_masked_modality_cannot_change_the_output(name):
    torch.manual_seed(0)
    net = models.build_model(name, M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    mask[:, 2] = False
    other = x.clone()
    other[:, 2] = torch.randn(32, D) * 100
    other[:5, 2] = float("nan")
    assert torch.equal(net(x, mask), net(other, mask))
    # ...while a present modality's content does change it
    present = x.clone()
    present[:, 1] += 3.0
    assert not torch.allclose(net(x, mask | True), net(present, mask | True))


def test_masked_modality_gets_no_gradient_in_the_resilient_model():
    torch.manual_seed(0)
    net = models.build_model("resilient", M, D, width=8, heads=2)
    x, mask = _inputs()
    mask[:, 2] = False
    net(x, mask).sum().backward()
    assert net.project.proj[2].weight.grad.abs().sum() == 0
    assert net.project.proj[0].weight.grad.abs().sum() > 0


def test_the_paper_model_zero_fills_a_missing_modality():
    torch.manual_seed(0)
    net = models.build_model("paper", M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    mask[:, :2] = True
    mask[:, 2] = False
    zero = x.clone()
    zero[:, 2] = 0.0
    other = x.clone()
    other[:, 2] = 7.0
    # missing == zero vector, whatever the stored content ...
    assert torch.equal(net(x, mask), net(zero, mask | True))
    assert torch.equal(net(x, mask), net(other, mask))
    # ... and that zero vector is not neutral: it shifts the output like any other input would
    unit = x.clone()
    unit[:, 2] = 1.0
    assert not torch.allclose(net(zero, mask | True), net(unit, mask | True))


@pytest.mark.parametrize("name", models.NEURAL_MODELS)
def test_a_prediction_does_not_depend_on_the_memory_layout_of_its_inputs(name):
    """numpy's ``a[rows][:, cols]`` (how chapters select a model's modalities) gives arrays in another memory layout
    than a contiguous copy; the logits are the same bytes for both."""
    import numpy as np

    torch.manual_seed(0)
    net = models.build_model(name, M, D, width=8, heads=2).eval()
    x, mask = _inputs(200)
    xs, ms = x.numpy()[:, [0, 2, 1]][:, [0, 2, 1]], mask.numpy()[:, [0, 2, 1]][:, [0, 2, 1]]
    strided = (torch.as_tensor(xs), torch.as_tensor(ms))
    assert not strided[0].is_contiguous() and not strided[1].is_contiguous()
    with torch.no_grad():
        assert torch.equal(net(x, mask), net(*strided))
        assert torch.equal(models.encode_inputs(net, x, mask), models.encode_inputs(net, *strided))


def test_late_fusion_averages_the_present_heads():
    torch.manual_seed(0)
    net = models.build_model("late", M, D, width=8, heads=2).eval()
    x, _ = _inputs(4)
    per = torch.cat([h(x[:, m]) for m, h in enumerate(net.heads)], dim=1)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    out = net(x, mask)
    assert torch.allclose(out[0], per[0].mean())
    assert torch.allclose(out[1], per[1, 0])
    assert torch.allclose(out[2], per[2, 1:].mean())
    assert out[3] == net.none_present


def test_decision_weights_split_by_modality():
    torch.manual_seed(0)
    net = models.build_model("linear", M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    mask[:] = True
    w = models.decision_weights(net, ["a", "b", "c"])
    assert [v.shape[0] for v in w.values()] == [8, 8, 8]
    h = net.features(x, mask)
    contrib = sum(h[:, i] @ w[m] for i, m in enumerate(["a", "b", "c"])) + net.decision.bias
    assert torch.allclose(contrib, net(x, mask), atol=1e-5)
    # zeroing modality b's block makes the model ignore b
    with torch.no_grad():
        net.decision.weight[0, 8:16] = 0
    other = x.clone()
    other[:, 1] = torch.randn(32, D)
    assert torch.allclose(net(x, mask), net(other, mask))


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="logreg"):
        models.build_model("logreg", M, D)
    with pytest.raises(ValueError, match="divisible"):
        models.build_model("paper", M, D, width=10, heads=3)


def test_contributions_sum_to_the_logit_and_calibration_reweights_them():
    torch.manual_seed(0)
    net = models.build_model("linear", M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    c, norms = models.contributions(net, x, mask)
    assert c.shape == norms.shape == (32, M)
    assert torch.allclose(c.sum(1) + net.decision.bias, net(x, mask), atol=1e-5)
    assert (c[~mask] == 0).all() and (norms[~mask] == 0).all(), "a missing modality contributes nothing"
    same = models.CalibratedDecision(net, torch.ones(M), net.decision.bias.item()).eval()
    assert torch.allclose(same(x, mask), net(x, mask), atol=1e-5)
    only0 = models.CalibratedDecision(net, torch.tensor([1.0, 0.0, 0.0]), 0.0).eval()
    assert torch.allclose(only0(x, mask), c[:, 0], atol=1e-6)
