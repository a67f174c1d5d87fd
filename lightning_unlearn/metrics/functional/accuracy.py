"""Accuracy on a split (D_f, D_r, D_t, D_tf, D_tr) and Unlearning Accuracy UA = 1 - Acc(D_f)."""

from __future__ import annotations

from torch import Tensor

from lightning_unlearn.metrics.functional._checks import check_logits


def _accuracy_update(logits: Tensor, target: Tensor) -> Tensor:
    """Per-sample correctness (bool) of ``argmax(logits)`` against ``target``."""
    check_logits("logits", logits, target)
    return logits.argmax(dim=1) == target


def _accuracy_compute(correct: Tensor) -> Tensor:
    if correct.numel() == 0:
        raise ValueError("Accuracy of an empty split is undefined: no sample was given.")
    return correct.double().mean()


def split_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Top-1 accuracy of ``logits`` (N, K) against ``target`` (N,), as a float64 scalar.

    Example:
        >>> import torch
        >>> split_accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor(0.5000, dtype=torch.float64)
    """
    return _accuracy_compute(_accuracy_update(logits, target))


def unlearning_accuracy(forget_logits: Tensor, forget_target: Tensor) -> Tensor:
    """UA = 1 - Acc(D_f) (SalUn, Fan et al., ICLR 2024)."""
    return 1.0 - split_accuracy(forget_logits, forget_target)
