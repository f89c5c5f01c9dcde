"""Each loss against a direct, loop-by-loop computation on small tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from damt.losses import UncertaintyWeighting, fixed_total, masked_l1, nt_xent, present_l1


def _nt_xent_direct(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """SimCLR's definition written out: for each of the 2B embeddings, -log of its partner's share
    of exp(cos / tau) over every other embedding."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        partner = (i + b) % n
        num = math.exp(z[i] @ z[partner] / tau)
        den = sum(math.exp(z[i] @ z[k] / tau) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_nt_xent_matches_definition_for_any_batch_size(batch, tau):
    g = torch.Generator().manual_seed(batch)
    z1, z2 = torch.randn(batch, 7, generator=g), torch.randn(batch, 7, generator=g)
    got = nt_xent(z1, z2, tau).item()
    assert got == pytest.approx(_nt_xent_direct(z1.numpy(), z2.numpy(), tau), rel=1e-5, abs=1e-6)
    if batch == 1:  # no negatives: the partner takes the whole softmax
        assert got == pytest.approx(0.0, abs=1e-6)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped():
    z = torch.eye(4) * 5
    assert nt_xent(z, z, 0.5) < nt_xent(z, z[[1, 2, 3, 0]], 0.5)


def test_nt_xent_half_precision_inputs_compute_in_float32():
    z1, z2 = torch.randn(3, 5).half(), torch.randn(3, 5).half()
    assert nt_xent(z1, z2, 0.5).dtype == torch.float32


def test_masked_l1_matches_direct():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 1, 4, 4, 4, generator=g), torch.rand(2, 1, 4, 4, 4, generator=g)
    mask = torch.rand(2, 1, 4, 4, 4, generator=g) > 0.5
    p, t, m = pred.numpy(), target.numpy(), mask.numpy()
    direct = sum(abs(p[i] - t[i]) for i in np.ndindex(p.shape) if m[i]) / m.sum()
    assert masked_l1(pred, target, mask).item() == pytest.approx(direct, rel=1e-6)


def test_masked_l1_with_nothing_masked_is_zero_with_a_finite_gradient():
    pred = torch.randn(1, 1, 2, 2, 2, requires_grad=True)
    loss = masked_l1(pred, torch.zeros_like(pred), torch.zeros_like(pred, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(pred.grad).all()


def test_present_l1_matches_direct_and_ignores_absent_entries():
    pred = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.5, -0.5]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0, float("nan")], [1.0, 99.0, 0.5]])
    present = torch.tensor([[True, True, False], [True, False, True]])
    loss = present_l1(pred, target, present)
    assert loss.item() == pytest.approx((1 + 2 + 0.5 + 1.0) / 4)
    loss.backward()
    # a NaN stored for an absent value must not reach the gradient through `where`
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0, 2] == 0 and pred.grad[1, 1] == 0


def test_present_l1_with_no_target_present_is_zero():
    pred = torch.randn(2, 3, requires_grad=True)
    loss = present_l1(pred, torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0 and (pred.grad == 0).all()


def test_fixed_total_is_the_weighted_sum():
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    assert fixed_total(losses, {"a": 0.5, "b": 5.0}).item() == pytest.approx(16.0)


def test_uncertainty_weighting_matches_formula_and_learns():
    w = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        w.params.copy_(torch.tensor([1.0, 2.0]))
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    direct = 0.5 / 1 * 2 + math.log(1 + 1) + 0.5 / 4 * 3 + math.log(1 + 4)
    assert w(losses).item() == pytest.approx(direct, rel=1e-6)
    assert w.effective_weights() == pytest.approx({"a": 0.5, "b": 0.125})
    w(losses).backward()
    assert w.params.grad is not None and torch.isfinite(w.params.grad).all()
