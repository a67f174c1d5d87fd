"""Generalised label smoothing (GLS) cross-entropy and the self-adaptive smoothing rate of UGradSL.

GLS (Wei et al. 2021; UGradSL, Di et al. 2024, Sec. 3.1) replaces the one-hot target of a
sample by ``y^α = (1 − α)·onehot(y) + α/K·1`` with ``α ∈ (−∞, 1]``; ``α < 0`` is
negative label smoothing (NLS). Its cross-entropy is, by linearity in the target,

    CE(z, y^α) = (1 − α)·CE(z, y) + α·mean_k CE(z, k)

which equals Eq. (6) of the paper: ``(1 + (1−K)/K·α)·ℓ(y) + α/K·Σ_{y'≠y} ℓ(y')``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F


def gls_cross_entropy(
    logits: Tensor,
    target: Tensor,
    alpha: float | Tensor = 0.0,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """Cross-entropy against the generalised-label-smoothing target ``(1 − α)·onehot(y) + α/K``.

    Args:
        logits: ``(N, K)`` unnormalised scores.
        target: ``(N,)`` integer labels.
        alpha: the smoothing rate, a float or a per-sample ``(N,)`` tensor; ``α < 0`` is
            negative label smoothing, ``α = 0`` plain cross-entropy, ``0 < α ≤ 1`` ordinary
            label smoothing (``α = 1``: uniform target).
        reduction: ``mean``, ``sum`` or ``none``.

    Returns:
        The loss (a scalar, or ``(N,)`` for ``reduction="none"``).

    Raises:
        ValueError: for a float ``alpha`` above 1 or not finite, or an unknown ``reduction``.

    Example:
        >>> z, y = torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
        >>> bool(torch.allclose(gls_cross_entropy(z, y, 0.0), F.cross_entropy(z, y)))
        True
    """
    if isinstance(alpha, (int, float)):
        if not math.isfinite(alpha) or alpha > 1:
            raise ValueError(f"`alpha` must be finite and <= 1 (GLS rate in (-inf, 1]), got {alpha}.")
        alpha_t: float | Tensor = float(alpha)
    else:  # a per-sample tensor built by the caller; not checked here (a check would sync the device every step)
        alpha_t = alpha.to(logits.dtype)
    log_p = F.log_softmax(logits, dim=1)
    nll = -log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
    uniform = -log_p.mean(dim=1)
    loss = (1.0 - alpha_t) * nll + alpha_t * uniform
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"`reduction` must be one of ['mean', 'sum', 'none'], got {reduction!r}.")


@torch.no_grad()
def adaptive_smoothing_rate(retain_embeddings: Tensor, forget_embeddings: Tensor, beta: float) -> Tensor:
    """The self-adaptive NLS rate ``α_i = −c_i/|B_f|`` of every forget sample (UGradSL).

    The paper leaves the distance ``d`` undefined and its algorithm listing drops the sign of
    ``α_i``; this package takes the cosine distance below and a negative rate (negative
    smoothing is what makes the ascent term forget).

    ``d(z_r, z_f) = (1 − cos(e_r, e_f))/2 ∈ [0, 1]`` on the penultimate embeddings, and
    ``c_i`` counts the retain samples of the paired batch with ``d < β``: a forget sample in a
    dense retain neighbourhood gets a stronger (more negative) smoothing rate. ``α_i ∈ [−1, 0]``
    for batches of equal size; a short last forget batch paired with a full retain
    batch can get ``α_i < −1`` (the formula is kept as is).

    Args:
        retain_embeddings: ``(B_r, E)`` embeddings of the retain batch.
        forget_embeddings: ``(B_f, E)`` embeddings of the forget batch.
        beta: distance threshold in ``[0, 1]``.

    Returns:
        ``(B_f,)`` rates in ``[−B_r/B_f, 0]`` (``[−1, 0]`` for batches of equal size), no gradient.

    Example:
        >>> e = torch.eye(3)
        >>> adaptive_smoothing_rate(e, e, beta=0.1).tolist()
        [-0.3333333432674408, -0.3333333432674408, -0.3333333432674408]
    """
    er = F.normalize(retain_embeddings.detach().float().flatten(1), dim=1)
    ef = F.normalize(forget_embeddings.detach().float().flatten(1), dim=1)
    distance = (1.0 - ef @ er.T) / 2.0  # (B_f, B_r)
    counts = (distance < beta).sum(dim=1).float()
    return -counts / max(ef.shape[0], 1)
