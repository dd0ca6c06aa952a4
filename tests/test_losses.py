import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skpeal.losses import (
    _check_finite,
    calibration_loss,
    calibration_weight_at,
    entropy,
    group_weights,
)

logit_arrays = st.integers(1, 6).flatmap(
    lambda n: st.integers(2, 8).flatmap(
        lambda c: arrays(np.float32, (n, c), elements=st.floats(-1e4, 1e4, width=32))
    )
)


@settings(max_examples=100, deadline=None)
@given(logit_arrays)
def test_entropy_finite_and_bounded(logits):
    h = entropy(torch.from_numpy(logits))
    c = logits.shape[1]
    assert torch.isfinite(h).all()
    assert (h >= -1e-6).all() and (h <= math.log(c) + 1e-5).all()


@settings(max_examples=100, deadline=None)
@given(logit_arrays, st.sampled_from(["sum", "balanced", "effective"]), st.data())
def test_loss_and_gradient_finite_for_extreme_logits(logits, mode, data):
    n, c = logits.shape
    target = torch.tensor(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    z = torch.from_numpy(logits).requires_grad_(True)
    loss = calibration_loss(z, target, mode)
    loss.backward()
    value = float(loss.detach())
    assert math.isfinite(value) and value >= -1e-5  # -log(1 + eps) at H = 0
    assert torch.isfinite(z.grad).all()


def test_entropy_values():
    assert float(entropy(torch.zeros(1, 4))[0]) == pytest.approx(math.log(4))
    assert float(entropy(torch.tensor([[1000.0, 0.0, 0.0]]))[0]) == pytest.approx(0.0, abs=1e-6)


def _entropy_after_step(logits, target, lr=0.1):
    z = logits.clone().requires_grad_(True)
    calibration_loss(z, target, "sum").backward()
    with torch.no_grad():
        return entropy(logits), entropy(z - lr * z.grad)


def test_gradient_lowers_entropy_of_correct_samples():
    logits = torch.tensor([[1.0, 0.2, 0.1], [0.3, 1.2, 0.0]])
    before, after = _entropy_after_step(logits, torch.tensor([0, 1]))
    assert (after < before).all()


def test_gradient_raises_entropy_of_wrong_samples():
    logits = torch.tensor([[1.0, 0.2, 0.1], [0.3, 1.2, 0.0]])
    before, after = _entropy_after_step(logits, torch.tensor([2, 0]))
    assert (after > before).all()


def test_mask_carries_no_gradient_and_terms_match_definition():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    target = torch.tensor([0, 0, 0])  # rows 0, 2 correct; row 1 wrong
    h = torch.tanh(entropy(logits))
    l_cor = (-torch.log(1 - h[[0, 2]] + 1e-6)).mean()
    l_inc = (-torch.log(h[[1]] + 1e-6)).mean()
    assert float(calibration_loss(logits, target, "sum")) == pytest.approx(float(l_cor + l_inc))
    expected = (1 / 3) * l_cor + (2 / 3) * l_inc  # (n_inc/n) L_cor + (n_cor/n) L_inc
    assert float(calibration_loss(logits, target, "balanced")) == pytest.approx(float(expected))


def test_group_weights():
    assert group_weights(3, 1, "sum") == (1.0, 1.0)
    assert group_weights(3, 1, "balanced") == (0.25, 0.75)
    w_cor, w_inc = group_weights(30, 10, "effective", beta=0.9)
    raw_cor, raw_inc = (0.1 / (1 - 0.9**30)), (0.1 / (1 - 0.9**10))
    assert w_cor == pytest.approx(raw_cor / (raw_cor + raw_inc))
    assert w_cor + w_inc == pytest.approx(1.0) and w_inc > w_cor  # the rarer group weighs more
    assert group_weights(0, 5, "effective") == (0.0, 1.0)
    with pytest.raises(ValueError, match="mode"):
        group_weights(1, 1, "foo")


@pytest.mark.parametrize("mode", ["sum", "balanced", "effective"])
def test_empty_groups_contribute_zero(mode):
    logits = torch.tensor([[3.0, 0.0], [0.0, 2.0]], requires_grad=True)
    all_correct = calibration_loss(logits, torch.tensor([0, 1]), mode)
    all_wrong = calibration_loss(logits, torch.tensor([1, 0]), mode)
    assert math.isfinite(all_correct.item()) and math.isfinite(all_wrong.item())
    (all_correct + all_wrong).backward()
    assert torch.isfinite(logits.grad).all()
    if mode == "balanced":  # with one group empty, the balanced weights are (0, 1)/(1, 0)*0
        assert all_correct.item() == 0.0


def test_no_batch_clamp_a_confident_mistake_does_not_kill_the_gradient():
    # One confidently wrong sample: its term is about -log(1e-6) = 13.8 > 5. The public
    # code clamps the batch total at 5, zeroing every gradient; ours keeps them.
    logits = torch.tensor([[60.0, 0.0], [1.0, 0.5], [0.4, 1.0]], requires_grad=True)
    target = torch.tensor([1, 0, 1])
    loss = calibration_loss(logits, target, "sum")
    assert loss.item() > 5.0
    loss.backward()
    assert logits.grad[1:].abs().sum() > 0


def test_weight_schedule_reaches_full_weight():
    assert calibration_weight_at(1.0, 2.0, 0.1) == pytest.approx(2.0)
    assert calibration_weight_at(0.0, 2.0, 0.1) == 0.0
    assert calibration_weight_at(0.1, 2.0, 0.1) == pytest.approx(0.02)
    values = [calibration_weight_at(p, 1.0, 0.1) for p in np.linspace(0, 1, 51)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert calibration_weight_at(0.3, 1.5, None) == 1.5
    assert calibration_weight_at(0.3, 1.5, 0.0) == 1.5
    with pytest.raises(ValueError, match="calibration_warmup"):
        calibration_weight_at(0.5, 1.0, 1.5)


def test_non_finite_loss_is_reported_not_zeroed():
    with pytest.raises(FloatingPointError, match="nan"):
        _check_finite(torch.tensor(float("nan")))


def test_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        calibration_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        calibration_loss(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
