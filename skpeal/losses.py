"""The uncertainty-calibration loss and its weight schedule (pure torch functions).

Per batch with softmax ``p``, prediction ``argmax p`` and entropy ``H`` (natural log):

* correct samples: ``L_cor = mean(-log(1 - tanh(H) + eps))`` pushes their entropy down;
* incorrect samples: ``L_inc = mean(-log(tanh(H) + eps))`` pushes their entropy up;
* an empty group contributes 0.

The correct/incorrect mask carries no gradient; the gradient flows through ``H``. Unlike
the authors' public code, nothing clamps the batch total (each per-sample term is already
bounded by ``-log(eps)``), the annealed weight reaches the full weight, and a non-finite
loss is reported, never replaced by zero.
"""

from __future__ import annotations

import math

import torch

from ._validation import check_choice, check_real

__all__ = [
    "CALIBRATION_MODES",
    "calibration_loss",
    "calibration_weight_at",
    "entropy",
    "group_weights",
]

#: Accepted values of ``mode`` in :func:`calibration_loss`.
CALIBRATION_MODES = ("sum", "balanced", "effective")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` along the last axis, in nats.

    Computed from ``log_softmax`` in float32 (at least), so it is finite for any finite
    logits, including extreme ones.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, C)
        Unnormalised class scores.

    Returns
    -------
    h : torch.Tensor of shape (n,)
        Values in ``[0, log C]``.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    # p * logp is 0 * -inf = nan where p underflows to 0; such terms are 0 in the limit.
    return -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(dim=-1)


def group_weights(
    n_correct: int, n_incorrect: int, mode: str, beta: float = 0.999
) -> tuple[float, float]:
    """Weights of the correct and incorrect terms for a combination mode.

    Parameters
    ----------
    n_correct, n_incorrect : int
        Sizes of the two groups in the batch.
    mode : {"sum", "balanced", "effective"}
        ``"sum"``: ``(1, 1)``. ``"balanced"``: ``(n_inc / n, n_cor / n)`` (the rarer group
        weighs more). ``"effective"``: class-balanced "effective number" weights
        ``w_k = (1 - beta) / (1 - beta ** n_k)``, normalised to sum to 1 over the two
        groups; an empty group gets weight 0.
    beta : float, default=0.999
        Used by ``"effective"`` only.

    Returns
    -------
    w_correct, w_incorrect : float
        The weights of the correct and of the incorrect group's mean term.
    """
    n = n_correct + n_incorrect
    if mode == "sum":
        return 1.0, 1.0
    if mode == "balanced":
        if n == 0:
            return 0.0, 0.0
        return n_incorrect / n, n_correct / n
    if mode == "effective":
        check_real("beta", beta, 0.0, 1.0, closed="neither")
        raw = [(1.0 - beta) / (1.0 - beta**k) if k > 0 else 0.0 for k in (n_correct, n_incorrect)]
        total = sum(raw)
        if total == 0.0:
            return 0.0, 0.0
        return raw[0] / total, raw[1] / total
    check_choice("calibration mode", mode, CALIBRATION_MODES)
    raise AssertionError(mode)  # pragma: no cover - check_choice raised


def calibration_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str = "balanced",
    *,
    eps: float = 1e-6,
    beta: float = 0.999,
) -> torch.Tensor:
    """Differentiable uncertainty-calibration loss of a batch.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, C)
        Unnormalised class scores of the batch.
    target : torch.LongTensor of shape (n,)
        Class indices.
    mode : {"sum", "balanced", "effective"}, default="balanced"
        How the correct and incorrect terms are combined; see :func:`group_weights`.
    eps : float, default=1e-6
        Inside the logarithms; bounds every per-sample term by ``-log(eps)`` (about 13.8).
    beta : float, default=0.999
        For ``mode="effective"``.

    Returns
    -------
    loss : torch.Tensor
        A scalar (float32).

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    >>> float(calibration_loss(logits, torch.tensor([0, 0]), "sum")) > 0
    True
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (n, C), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(
            f"target must have shape ({logits.shape[0]},), got {tuple(target.shape)}"
        )
    if mode not in CALIBRATION_MODES:
        check_choice("calibration mode", mode, CALIBRATION_MODES)
    h = torch.tanh(entropy(logits))
    with torch.no_grad():
        correct = logits.argmax(dim=-1) == target
    n_cor = int(correct.sum())
    n_inc = int(correct.numel() - n_cor)
    zero = h.sum() * 0.0  # keeps the graph and dtype when a group is empty
    l_cor = (-torch.log(1.0 - h[correct] + eps)).mean() if n_cor else zero
    l_inc = (-torch.log(h[~correct] + eps)).mean() if n_inc else zero
    w_cor, w_inc = group_weights(n_cor, n_inc, mode, beta)
    return w_cor * l_cor + w_inc * l_inc


def calibration_weight_at(progress: float, weight: float, warmup: float | None = 0.1) -> float:
    """Annealed weight of the calibration term at a point of training.

    With ``warmup`` > 0 the weight rises linearly from 0 to ``weight / 100`` over the
    first ``warmup`` fraction of training (as in the authors' code), then linearly from
    there to the full ``weight``, which it reaches at the end of training. (The public
    code stops at ``weight / 100``.) With ``warmup`` None or 0 the weight is constant.

    Parameters
    ----------
    progress : float
        Fraction of training done, in ``[0, 1]``.
    weight : float
        The full weight (lambda).
    warmup : float or None, default=0.1
        Fraction of training spent warming up, in ``[0, 1)``.

    Returns
    -------
    w : float
        The calibration weight at ``progress``.

    Examples
    --------
    >>> calibration_weight_at(1.0, 2.0)
    2.0
    >>> calibration_weight_at(0.05, 1.0)
    0.005
    """
    if not warmup:
        return float(weight)
    warmup = check_real("calibration_warmup", warmup, 0.0, 1.0, closed="left")
    progress = min(max(float(progress), 0.0), 1.0)
    start = weight / 100.0
    if progress < warmup:
        return start * progress / warmup
    return start + (weight - start) * (progress - warmup) / (1.0 - warmup)


def _check_finite(loss: torch.Tensor, what: str = "loss") -> None:
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(
            f"the training {what} became {float(loss.detach())}; lower lr, or use "
            "precision='fp32'. (skpeal never silently replaces a non-finite loss.)"
        )
