"""Accuracy on a split and Unlearning Accuracy as torchmetrics Metrics (DDP-exact)."""

from __future__ import annotations

from torch import Tensor

from lightning_unlearn.metrics._base import IndexedMetric, _check_indices
from lightning_unlearn.metrics.functional.accuracy import _accuracy_compute, _accuracy_update


class SplitAccuracy(IndexedMetric):
    """Top-1 accuracy on one split (D_f, D_r, D_t, D_tf or D_tr), exact under DDP.

    Unlike a counting accuracy, it keeps one correctness flag per dataset index, so the samples
    DistributedSampler repeats to even out the shards are counted once.

    Example:
        >>> import torch
        >>> metric = SplitAccuracy()
        >>> metric.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), torch.tensor([5, 9]))
        >>> metric.update(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), torch.tensor([5]))  # a padded repeat
        >>> float(metric.compute())
        0.5
    """

    is_differentiable = False
    higher_is_better: bool | None = None  # high on D_r/D_t is good, on D_f it is not
    full_state_update = False

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.add_sample_states("split", "correct")

    def update(self, logits: Tensor, target: Tensor, indices: Tensor) -> None:
        correct = _accuracy_update(logits, target)
        self._append("split", _check_indices(indices, correct.shape[0]), correct=correct)

    def compute(self) -> Tensor:
        _, correct = self._samples("split", "correct")
        return _accuracy_compute(correct)


class UnlearningAccuracy(SplitAccuracy):
    """UA = 1 − Acc(D_f) (SalUn, Fan et al. 2024); update it with forget-set batches only."""

    higher_is_better = True

    def compute(self) -> Tensor:
        return 1.0 - super().compute()
