"""Losses on tensors whose values are computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from kdsearch.distill.errors import ConfigError
from kdsearch.distill.losses import (
    attention_mse,
    available_soft_losses,
    get_soft_loss,
    hard_cross_entropy,
    hidden_mse,
    kl_divergence,
    masked_mse,
    pkd_loss,
    prediction_loss,
    soft_cross_entropy,
)
from kdsearch.distill.methods.kd import HiddenProjection


def test_registry_names() -> None:
    assert available_soft_losses() == ["kl", "logit_mse", "soft_ce"]
    assert get_soft_loss("kl") is kl_divergence
    with pytest.raises(
        ConfigError, match="unknown distill.soft_loss 'mse'.*kl, logit_mse, soft_ce"
    ):
        get_soft_loss("mse")


def test_logit_mse_is_tangs_squared_logit_distance() -> None:
    s = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    t = torch.tensor([[3.0, 0.0], [0.5, 0.0]])
    # ((1-3)^2 + (-1-0)^2 + 0 + (2-0)^2) / 2 rows = (4 + 1 + 4) / 2
    loss = get_soft_loss("logit_mse")(s, t, 4.0, True)
    assert float(loss) == pytest.approx(4.5)
    assert float(get_soft_loss("logit_mse")(t, t, 1.0, False)) == 0.0


def test_soft_ce_by_hand() -> None:
    s = torch.tensor([[0.0, math.log(3.0)]])  # student probs at T=1: [0.25, 0.75]
    t = torch.tensor([[0.0, 0.0]])  # teacher uniform
    # -(0.5 ln 0.25 + 0.5 ln 0.75)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert soft_cross_entropy(s, t, 1.0, False).item() == pytest.approx(expected, rel=1e-6)
    # T = 2 halves the logits: student probs softmax([0, ln3/2]) = [1/(1+sqrt3), sqrt3/(1+sqrt3)]
    p1 = 1 / (1 + math.sqrt(3))
    expected_t2 = -(0.5 * math.log(p1) + 0.5 * math.log(1 - p1))
    assert soft_cross_entropy(s, t, 2.0, False).item() == pytest.approx(expected_t2, rel=1e-6)
    assert soft_cross_entropy(s, t, 2.0, True).item() == pytest.approx(4 * expected_t2, rel=1e-6)


def test_kl_by_hand_and_relation_to_soft_ce() -> None:
    s = torch.tensor([[0.0, math.log(3.0)], [1.0, -1.0]])
    t = torch.tensor([[0.0, 0.0], [2.0, 0.5]])
    # row 1: KL([.5,.5] || [.25,.75]) = .5 ln 2 + .5 ln(2/3)
    row1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    pt = torch.softmax(t[1], -1)
    ps = torch.softmax(s[1], -1)
    row2 = float((pt * (pt.log() - ps.log())).sum())
    assert kl_divergence(s, t, 1.0, False).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    # KL = soft CE - H(teacher), at any temperature
    for temp in (1.0, 3.0):
        pt_t = torch.softmax(t / temp, -1)
        entropy = float(-(pt_t * pt_t.log()).sum(-1).mean())
        kl = kl_divergence(s, t, temp, False).item()
        ce = soft_cross_entropy(s, t, temp, False).item()
        assert kl == pytest.approx(ce - entropy, abs=1e-6)
    assert kl_divergence(t, t, 4.0, True).item() == pytest.approx(0.0, abs=1e-7)


def test_prediction_loss_mixes_by_alpha() -> None:
    s = torch.tensor([[0.3, -0.2, 1.0], [0.0, 2.0, -1.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([2, 1])
    soft = kl_divergence(s, t, 2.0, True).item()
    hard = hard_cross_entropy(s, y).item()
    # hard CE by hand for row 0: -log softmax(s0)[2]
    assert hard == pytest.approx(
        float(-(torch.log_softmax(s, -1)[[0, 1], [2, 1]]).mean()), rel=1e-6
    )
    kw = {"soft_loss": "kl", "temperature": 2.0, "t2_scaling": True}
    assert prediction_loss(s, t, y, alpha=0.0, **kw).item() == pytest.approx(soft, rel=1e-6)
    assert prediction_loss(s, t, y, alpha=1.0, **kw).item() == pytest.approx(hard, rel=1e-6)
    mixed = prediction_loss(s, t, y, alpha=0.25, **kw).item()
    assert mixed == pytest.approx(0.75 * soft + 0.25 * hard, rel=1e-6)


def test_masked_mse_ignores_padding() -> None:
    s = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [99.0, 99.0]]])
    t = torch.tensor([[[0.0, 2.0], [3.0, 2.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # kept squared errors: 1, 0, 0, 4 -> mean 5/4
    assert masked_mse(s, t, mask.bool()).item() == pytest.approx(1.25)
    assert hidden_mse(s, t, mask).item() == pytest.approx(1.25)
    s2 = s.clone()
    s2[0, 2] = -1e4  # the padded token's value must not matter
    assert hidden_mse(s2, t, mask).item() == pytest.approx(1.25)


def test_hidden_mse_through_projection_has_gradient() -> None:
    torch.manual_seed(0)
    proj = HiddenProjection(4, 6)
    s = torch.randn(2, 3, 4)
    t = torch.randn(2, 3, 6)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    loss = hidden_mse(s, t, mask, proj)
    by_hand = ((proj(s) - t) ** 2)[mask.bool()].mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    loss.backward()
    assert proj.linear.weight.grad is not None
    assert float(proj.linear.weight.grad.abs().sum()) > 0


def test_pkd_loss_by_hand() -> None:
    """Rows (3, 4) vs (4, 3): normalised (0.6, 0.8) vs (0.8, 0.6), squared distance 0.08;
    rows (1, 0) vs (0, 2): (1, 0) vs (0, 1), distance 2. Mean over the batch 1.04 per
    layer pair, summed over pairs."""
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    t = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    assert pkd_loss([s], [t]).item() == pytest.approx(1.04)
    assert pkd_loss([s, s], [t, t]).item() == pytest.approx(2.08)
    assert pkd_loss([10 * s], [0.5 * t]).item() == pytest.approx(1.04)  # scale-free
    assert pkd_loss([s], [s]).item() == pytest.approx(0.0)
    assert pkd_loss([], []).item() == 0.0
    # through a projection (student width 3 -> teacher width 2), with a gradient
    proj = HiddenProjection(3, 2)
    with torch.no_grad():
        proj.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        proj.linear.bias.zero_()
    wide = torch.tensor([[3.0, 4.0, 9.0], [1.0, 0.0, -5.0]], requires_grad=True)
    loss = pkd_loss([wide], [t], proj)
    assert loss.item() == pytest.approx(1.04)
    loss.backward()
    assert wide.grad is not None and proj.linear.weight.grad is not None
    with pytest.raises(ValueError, match="2 student layers but 1 teacher"):
        pkd_loss([s, s], [t])


def test_attention_mse_excludes_masked_pairs() -> None:
    # batch 1, 1 head, 3 tokens, the last is padding: only the 2x2 top-left block counts
    s = torch.zeros(1, 1, 3, 3)
    t = torch.zeros(1, 1, 3, 3)
    t[0, 0, :2, :2] = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    t[0, 0, 2, :] = 500.0  # padded query row
    t[0, 0, :, 2] = -500.0  # padded key column
    mask = torch.tensor([[1, 1, 0]])
    # squared errors of the valid block: 1, 4, 0, 1 -> 6/4
    assert attention_mse(s, t, mask).item() == pytest.approx(1.5)


def test_attention_mse_head_mismatch_averages_heads() -> None:
    s = torch.ones(1, 2, 2, 2)  # two heads of 1 -> mean 1
    t = torch.zeros(1, 4, 2, 2)
    t[:, :2] = 2.0  # four heads: mean 1
    mask = torch.ones(1, 2, dtype=torch.long)
    assert attention_mse(s, t, mask).item() == pytest.approx(0.0)
