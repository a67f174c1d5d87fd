"""Entropy Distance and prediction KL against a reference model, as torchmetrics Metrics (DDP-exact)."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_unlearn.metrics._base import IndexedMetric, _check_indices
from lightning_unlearn.metrics.functional.divergence import (
    _entropy_distance_compute,
    _entropy_distance_update,
    _prediction_kl_compute,
)
from lightning_unlearn.metrics.functional._checks import check_logits, check_same_classes


class EntropyDistance(IndexedMetric):
    """Entropy Distance (Prototype Surgery (Liu et al., CCS 2025, Eq. 14): mean per-sample Jensen–Shannon divergence
    between the unlearned and the reference (retrained) model's softmax outputs on a split.

    Example:
        >>> import torch
        >>> metric = EntropyDistance()
        >>> z = torch.randn(8, 4)
        >>> metric.update(z, z, torch.arange(8))
        >>> float(metric.compute())
        0.0
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.add_sample_states("split", "js")

    def update(self, logits: Tensor, reference_logits: Tensor, indices: Tensor) -> None:
        js = _entropy_distance_update(logits, reference_logits)
        self._append("split", _check_indices(indices, js.shape[0]), js=js)

    def compute(self) -> Tensor:
        _, js = self._samples("split", "js")
        return _entropy_distance_compute(js.double())


class PredictionKL(IndexedMetric):
    """KL(S ‖ S_ref) of the predicted-class distributions on D_tf (PRU, Zhang et al., ACML 2024, §5.3.2).

    Keeps each sample's predicted class under both models (keyed by dataset index) and builds the
    two histograms in ``compute``. Deviation: ``eps`` smoothing of empty classes, see
    :func:`~lightning_unlearn.metrics.functional.prediction_kl`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_classes: int, eps: float = 1e-6, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
        if eps <= 0:
            raise ValueError(f"`eps` must be > 0, got {eps}.")
        super().__init__(**kwargs)
        self.num_classes, self.eps = num_classes, eps
        self.add_sample_states("split", "pred", "ref_pred")

    def update(self, logits: Tensor, reference_logits: Tensor, indices: Tensor) -> None:
        check_logits("logits", logits)
        check_logits("reference_logits", reference_logits)
        check_same_classes("logits", logits, "reference_logits", reference_logits)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"`logits` has {logits.shape[1]} classes, expected num_classes={self.num_classes}.")
        idx = _check_indices(indices, logits.shape[0])
        self._append("split", idx, pred=logits.argmax(1), ref_pred=reference_logits.argmax(1))

    def compute(self) -> Tensor:
        _, pred, ref_pred = self._samples("split", "pred", "ref_pred")
        counts = torch.bincount(pred.long(), minlength=self.num_classes).double()
        ref_counts = torch.bincount(ref_pred.long(), minlength=self.num_classes).double()
        return _prediction_kl_compute(counts, ref_counts, self.eps)
