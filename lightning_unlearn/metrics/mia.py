"""Membership-inference metrics as torchmetrics Metrics: attacks fitted once, seeded, on gathered de-duplicated data."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from lightning_unlearn.metrics._base import IndexedMetric, _check_indices
from lightning_unlearn.metrics.functional.mia import (
    _loss_mia_compute,
    _loss_mia_update,
    _mia_efficacy_compute,
    _mia_efficacy_update,
)

MIASplit = Literal["retain", "test", "forget"]


class MIAEfficacy(IndexedMetric):
    """MIA-efficacy: fraction of D_f a confidence SVC predicts as non-member (SalUn / Jia et al. 2023).

    Update with batches of each split, naming the split. In ``compute`` the states of all
    processes are gathered, repeats (DistributedSampler padding) dropped by dataset index, and an
    ``SVC(C=3, gamma="auto")`` is fitted once on p_y of the first |D_t| retain samples (members, in
    dataset-index order) vs the test samples. See :func:`~lightning_unlearn.metrics.functional.mia_efficacy`.

    Example:
        >>> import torch
        >>> metric = MIAEfficacy()
        >>> g = torch.Generator().manual_seed(0)
        >>> for split in ("retain", "test", "forget"):
        ...     metric.update(torch.randn(40, 3, generator=g), torch.zeros(40, dtype=torch.long), torch.arange(40), split)
        >>> 0.0 <= float(metric.compute()) <= 1.0
        True
    """

    is_differentiable = False
    higher_is_better: bool | None = None  # closest to the retrained model's value is best
    full_state_update = False

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        for split in ("retain", "test", "forget"):
            self.add_sample_states(split, "confidence")

    def update(self, logits: Tensor, target: Tensor, indices: Tensor, split: MIASplit) -> None:
        if split not in ("retain", "test", "forget"):
            raise ValueError(f"`split` must be one of ('retain', 'test', 'forget'), got {split!r}.")
        confidence = _mia_efficacy_update(logits, target)
        self._append(split, _check_indices(indices, confidence.shape[0]), confidence=confidence)

    def compute(self) -> Tensor:
        retain, test, forget = (self._samples(s, "confidence")[1] for s in ("retain", "test", "forget"))
        return _mia_efficacy_compute(retain.double(), test.double(), forget.double())


class LossMIA(IndexedMetric):
    """Loss MIA: accuracy (mean, std) of a logistic regression telling D_f from D_t by the loss (SCRUB).

    Update with forget batches (``split="forget"``) and test batches (``split="test"``; for
    class-wise forgetting feed D_tf). ``compute`` returns ``(mean, std)`` over
    ``StratifiedShuffleSplit(n_splits, test_size, random_state=seed)``, fitted once on the
    gathered, de-duplicated losses, balanced by a seeded subsample keyed by dataset index.
    """

    is_differentiable = False
    higher_is_better = False  # ideal is about 0.5
    full_state_update = False

    def __init__(self, n_splits: int = 10, test_size: float = 0.1, seed: int = 0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if n_splits < 2:
            raise ValueError(f"`n_splits` must be >= 2, got {n_splits}.")
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"`test_size` must be in (0, 1), got {test_size}.")
        super().__init__(**kwargs)
        self.n_splits, self.test_size, self.seed = n_splits, test_size, seed
        for split in ("forget", "test"):
            self.add_sample_states(split, "loss")

    def update(self, logits: Tensor, target: Tensor, indices: Tensor, split: Literal["forget", "test"]) -> None:
        if split not in ("forget", "test"):
            raise ValueError(f"`split` must be 'forget' or 'test', got {split!r}.")
        loss = _loss_mia_update(logits, target)
        self._append(split, _check_indices(indices, loss.shape[0]), loss=loss)

    def compute(self) -> tuple[Tensor, Tensor]:
        f_idx, f_loss = self._samples("forget", "loss")
        t_idx, t_loss = self._samples("test", "loss")
        return _loss_mia_compute(f_loss.double(), t_loss.double(), f_idx, t_idx, self.n_splits, self.test_size, self.seed)
