"""Per-example forgetting scores as torchmetrics Metrics (U-LiRA, the NeurIPS 2023 score, KLOM).

Each update takes a batch of examples with the statistic of every model on them: ``unlearned``
``(K_u, B)`` and ``retrained`` ``(K_r, B)`` (e.g. :func:`~lightning_unlearn.metrics.functional.logit_scaled_confidence`
of each model's logits), and the examples' dataset indices ``(B,)``. States are kept per example and
gathered across processes in ``compute``, where repeats (DistributedSampler padding) are dropped by
dataset index, so the value does not depend on the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from lightning_unlearn.metrics._base import IndexedMetric, _check_indices
from lightning_unlearn.metrics.functional.per_example import (
    KLOM_PERCENTILES,
    NEURIPS_DELTA,
    _check_pair,
    klom,
    neurips_forgetting_score,
    ulira,
)


class _PerExampleMetric(IndexedMetric):
    is_differentiable = False
    full_state_update = False
    min_models = 2

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.add_sample_states("split", "unlearned", "retrained")

    def update(self, unlearned: Tensor, retrained: Tensor, indices: Tensor) -> None:
        u, r = _check_pair("unlearned", unlearned, "retrained", retrained, self.min_models)
        self._append("split", _check_indices(indices, u.shape[1]), unlearned=u.T, retrained=r.T)

    def _gathered(self) -> tuple[Tensor, Tensor]:
        _, u, r = self._samples("split", "unlearned", "retrained")
        if u.numel() == 0:
            raise ValueError(f"{type(self).__name__} was computed before any update: no example was given.")
        return u.T.double(), r.T.double()


class ULiRA(_PerExampleMetric):
    """U-LiRA-style per-example likelihood-ratio attack: AUC and TPR at low FPR (see :func:`~lightning_unlearn.metrics.functional.ulira`).

    Example:
        >>> import torch
        >>> metric = ULiRA()
        >>> g = torch.Generator().manual_seed(0)
        >>> metric.update(torch.randn(8, 50, generator=g), torch.randn(8, 50, generator=g), torch.arange(50))
        >>> 0.3 < metric.compute()["auc"] < 0.7
        True
    """

    higher_is_better = False  # ideal: AUC 0.5

    def __init__(self, n_folds: int = 2, min_std: float = 1e-2, fprs: Sequence[float] = (0.01, 0.05), **kwargs) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(n_folds, int) or n_folds < 2:
            raise ValueError(f"`n_folds` must be an int >= 2, got {n_folds!r}.")
        if min_std <= 0:
            raise ValueError(f"`min_std` must be > 0, got {min_std}.")
        super().__init__(**kwargs)
        self.n_folds, self.min_std, self.fprs = n_folds, min_std, tuple(fprs)

    def compute(self) -> dict[str, float]:
        return ulira(*self._gathered(), n_folds=self.n_folds, min_std=self.min_std, fprs=self.fprs)


class NeurIPSForgettingScore(_PerExampleMetric):
    """The NeurIPS 2023 unlearning challenge's forgetting quality F (see :func:`~lightning_unlearn.metrics.functional.neurips_forgetting_score`).

    ``compute`` returns ``{"forgetting_quality": F, "epsilon_median": ...}``; with ``retain_accuracy``
    and ``test_accuracy`` (each ``(unlearned, retrained)``) also the final ``score``.
    """

    higher_is_better = True
    min_models = 3

    def __init__(
        self,
        retain_accuracy: tuple[float, float] | None = None,
        test_accuracy: tuple[float, float] | None = None,
        delta: float = NEURIPS_DELTA,
        **kwargs,  # type: ignore[no-untyped-def]
    ) -> None:
        if (retain_accuracy is None) != (test_accuracy is None):
            raise ValueError("Give both `retain_accuracy` and `test_accuracy` (each (unlearned, retrained)), or neither.")
        super().__init__(**kwargs)
        self.retain_accuracy, self.test_accuracy, self.delta = retain_accuracy, test_accuracy, delta

    def compute(self) -> dict[str, float]:
        u, r = self._gathered()
        return neurips_forgetting_score(u, r, self.retain_accuracy, self.test_accuracy, self.delta)


class KLOM(_PerExampleMetric):
    """KLOM percentiles over the examples (see :func:`~lightning_unlearn.metrics.functional.klom`); ideal: 0."""

    higher_is_better = False

    def __init__(self, percentiles: Sequence[float] = KLOM_PERCENTILES, bins: int = 20, eps: float = 1e-5, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"`bins` must be an int >= 1, got {bins!r}.")
        for p in percentiles:
            if not 0.0 <= p <= 100.0:
                raise ValueError(f"`percentiles` must lie in [0, 100], got {p}.")
        super().__init__(**kwargs)
        self.percentiles, self.bins, self.eps = tuple(percentiles), bins, eps

    def compute(self) -> dict[str, float]:
        return klom(*self._gathered(), percentiles=self.percentiles, bins=self.bins, eps=self.eps)


__all__ = ["KLOM", "NeurIPSForgettingScore", "ULiRA"]
