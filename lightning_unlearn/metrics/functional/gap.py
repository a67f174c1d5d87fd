"""Average gap to the retrained model (SalUn's "Avg. Gap")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

GAP_KEYS: tuple[str, ...] = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")


def _as_vector(name: str, value: Mapping[str, float] | Sequence[float] | Tensor) -> Tensor:
    if isinstance(value, Mapping):
        missing = [k for k in GAP_KEYS if k not in value]
        if missing:
            raise ValueError(f"`{name}` must have the keys {GAP_KEYS}, missing {missing}.")
        value = [float(value[k]) for k in GAP_KEYS]
    vector = torch.as_tensor(value, dtype=torch.float64).flatten()
    if vector.numel() != len(GAP_KEYS):
        raise ValueError(f"`{name}` must hold {len(GAP_KEYS)} values {GAP_KEYS}, got {vector.numel()}.")
    if not torch.isfinite(vector).all():
        raise ValueError(f"`{name}` holds a non-finite value: {vector.tolist()}.")
    return vector


def average_gap(
    unlearned: Mapping[str, float] | Sequence[float] | Tensor, reference: Mapping[str, float] | Sequence[float] | Tensor
) -> Tensor:
    """Mean |m_u − m_ref| over Acc(D_f), Acc(D_r), Acc(D_t) and MIA-efficacy (SalUn's "Avg. Gap").

    Values are fractions in [0, 1] (multiply by 100 for the papers' percentage points).

    Example:
        >>> round(float(average_gap([0.1, 0.9, 0.8, 0.5], [0.0, 1.0, 0.8, 0.7])), 6)
        0.1
    """
    return (_as_vector("unlearned", unlearned) - _as_vector("reference", reference)).abs().mean()
