"""Output-distribution distances to the reference (retrained) model: Entropy Distance and prediction KL."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_unlearn.metrics.functional._checks import check_logits, check_same_classes


def _xlogy_ratio(p: Tensor, q: Tensor) -> Tensor:
    """Σ p log(p/q) per row, with 0·log 0 = 0."""
    return torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p)).sum(dim=-1)


def _entropy_distance_update(logits: Tensor, reference_logits: Tensor) -> Tensor:
    """Per-sample Jensen-Shannon divergence (nats) between the two models' softmax outputs."""
    check_logits("logits", logits)
    check_logits("reference_logits", reference_logits)
    check_same_classes("logits", logits, "reference_logits", reference_logits)
    if logits.shape[0] != reference_logits.shape[0]:
        raise ValueError(
            f"`logits` and `reference_logits` must hold the same samples, got {logits.shape[0]} and"
            f" {reference_logits.shape[0]} rows."
        )
    p_u = logits.double().softmax(dim=1)
    p_r = reference_logits.double().softmax(dim=1)
    m = 0.5 * (p_u + p_r)
    return (0.5 * (_xlogy_ratio(p_r, m) + _xlogy_ratio(p_u, m))).clamp_min(0.0)


def _entropy_distance_compute(measures: Tensor) -> Tensor:
    if measures.numel() == 0:
        raise ValueError("Entropy Distance of an empty split is undefined: no sample was given.")
    return measures.mean()


def entropy_distance(logits: Tensor, reference_logits: Tensor) -> Tensor:
    """Entropy Distance (Prototype Surgery (Liu et al., CCS 2025, Eq. 14): mean Jensen-Shannon divergence.

    ``ED = 1/2 KL(P_r || M) + 1/2 KL(P_u || M)``, ``M = (P_r + P_u)/2``, for the softmax outputs of
    the reference (retrained) and the unlearned model on each sample of a split, in nats, averaged
    over the split. Symmetric, 0 for identical outputs, at most log 2.

    Example:
        >>> import torch
        >>> z = torch.tensor([[1.0, 2.0, 0.5]])
        >>> float(entropy_distance(z, z))
        0.0
    """
    return _entropy_distance_compute(_entropy_distance_update(logits, reference_logits))


def _prediction_kl_update(logits: Tensor, reference_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted-class histograms (counts) of the two models."""
    check_logits("logits", logits)
    check_logits("reference_logits", reference_logits)
    check_same_classes("logits", logits, "reference_logits", reference_logits)
    k = logits.shape[1]
    counts = torch.bincount(logits.argmax(dim=1), minlength=k).double()
    reference_counts = torch.bincount(reference_logits.argmax(dim=1), minlength=k).double()
    return counts, reference_counts


def _prediction_kl_compute(counts: Tensor, reference_counts: Tensor, eps: float = 1e-6) -> Tensor:
    if counts.sum() == 0 or reference_counts.sum() == 0:
        raise ValueError("Prediction KL of an empty split is undefined: no sample was given.")
    s = counts / counts.sum() + eps
    s_ref = reference_counts / reference_counts.sum() + eps
    s, s_ref = s / s.sum(), s_ref / s_ref.sum()
    return _xlogy_ratio(s, s_ref)


def prediction_kl(logits: Tensor, reference_logits: Tensor, eps: float = 1e-6) -> Tensor:
    """KL(S || S_ref) of the predicted-class distributions (PRU, Zhang et al., ACML 2024, §5.3.2).

    ``S`` is the distribution of the unlearned model's predicted classes (argmax) over the
    samples (D_tf), ``S_ref`` the retrained model's. Deviation: ``eps`` is added to every
    class frequency before renormalising, so a class the reference never predicts gives a large
    finite value rather than infinity (the paper does not say how it handles empty bins).
    """
    if eps <= 0:
        raise ValueError(f"`eps` must be > 0, got {eps}.")
    return _prediction_kl_compute(*_prediction_kl_update(logits, reference_logits), eps=eps)
