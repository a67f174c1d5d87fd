"""Per-sample metric states keyed by dataset index (the DDP-exactness machinery)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_unlearn.metrics.functional._checks import deduplicate


def _check_indices(indices: Tensor | None, n: int) -> Tensor:
    if indices is None:
        raise ValueError(
            "`indices` (the samples' dataset indices, the third element of every batch) are required: they let the"
            " metric drop the duplicates DistributedSampler pads in."
        )
    indices = torch.as_tensor(indices)
    if indices.ndim != 1 or indices.shape[0] != n:
        raise ValueError(f"`indices` must have shape ({n},), got {tuple(indices.shape)}.")
    return indices.long()


class IndexedMetric(Metric):
    """A Metric whose per-sample states are gathered, then de-duplicated by dataset index, in ``compute``.

    Subclasses declare groups of per-sample states with :meth:`add_sample_states`; ``_samples(group)``
    returns the group's values ordered by dataset index with each index once, so the value does not
    depend on the number of processes, their sample order, or DistributedSampler's padding.
    """

    full_state_update = False

    def add_sample_states(self, group: str, *names: str) -> None:
        self.add_state(f"{group}_indices", default=[], dist_reduce_fx="cat")
        for name in names:
            self.add_state(f"{group}_{name}", default=[], dist_reduce_fx="cat")

    def _append(self, group: str, indices: Tensor, **values: Tensor) -> None:
        getattr(self, f"{group}_indices").append(indices.to(self.device))
        for name, value in values.items():
            getattr(self, f"{group}_{name}").append(value.detach().to(self.device))

    def _samples(self, group: str, *names: str) -> tuple[Tensor, ...]:
        state = getattr(self, f"{group}_indices")
        if isinstance(state, list) and not state:
            return (torch.empty(0, dtype=torch.long), *(torch.empty(0) for _ in names))
        indices = dim_zero_cat(state)
        values = [dim_zero_cat(getattr(self, f"{group}_{n}")) for n in names]
        return deduplicate(indices, *values)
