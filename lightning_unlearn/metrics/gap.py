"""Average gap and runtime as torchmetrics Metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_unlearn.metrics.functional.gap import average_gap


class AverageGap(Metric):
    """Mean |m_u − m_ref| over Acc D_f, Acc D_r, Acc D_t and MIA-efficacy (SalUn's "Avg. Gap").

    ``update(unlearned, reference)`` with the four values (mapping with keys
    :data:`~lightning_unlearn.metrics.functional.GAP_KEYS` or a length-4 sequence); ``compute``
    averages over updates.

    Example:
        >>> metric = AverageGap()
        >>> metric.update([0.0, 1.0, 0.9, 0.5], [0.0, 1.0, 0.9, 0.7])
        >>> round(float(metric.compute()), 6)
        0.05
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.add_state("gap_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, unlearned: Mapping[str, float] | Sequence[float] | Tensor, reference: Mapping[str, float] | Sequence[float] | Tensor) -> None:
        self.gap_sum += average_gap(unlearned, reference).to(self.gap_sum)
        self.count += 1

    def compute(self) -> Tensor:
        if self.count == 0:
            raise ValueError("AverageGap.compute() called before any update().")
        return self.gap_sum / self.count


class Runtime(Metric):
    """Wall-clock seconds of the unlearning call alone, the slowest process under DDP.

    Example:
        >>> metric = Runtime()
        >>> with metric.measure():
        ...     _ = sum(range(1000))
        >>> float(metric.compute()) >= 0.0
        True
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.add_state("seconds", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="max")

    def update(self, seconds: float | Tensor) -> None:
        value = float(seconds)
        if value < 0:
            raise ValueError(f"`seconds` must be >= 0, got {value}.")
        self.seconds += value

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Time the enclosed block and add it."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.update(time.perf_counter() - start)

    def compute(self) -> Tensor:
        return self.seconds.clone()
