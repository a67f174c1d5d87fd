"""Input checks and the index de-duplication shared by the unlearning metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def check_logits(name: str, logits: Tensor, target: Tensor | None = None) -> None:
    """Raise a clear error unless ``logits`` is a non-empty ``(N, K)`` float tensor matching ``target``."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, K), got {type(logits).__name__}.")
    if logits.ndim != 2:
        raise ValueError(f"`{name}` must have shape (N, K), got shape {tuple(logits.shape)}.")
    if logits.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (0 samples): the metric of an empty split is undefined.")
    if target is not None:
        if target.ndim != 1 or target.shape[0] != logits.shape[0]:
            raise ValueError(
                f"The targets of `{name}` must have shape ({logits.shape[0]},), got shape {tuple(target.shape)}."
            )
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= logits.shape[1]):
            raise ValueError(
                f"The targets of `{name}` must lie in [0, {logits.shape[1] - 1}], got range"
                f" [{int(target.min())}, {int(target.max())}]."
            )


def check_same_classes(name: str, logits: Tensor, other_name: str, other: Tensor) -> None:
    if logits.shape[1] != other.shape[1]:
        raise ValueError(
            f"`{name}` has {logits.shape[1]} classes but `{other_name}` has {other.shape[1]}: the models being"
            " compared must share the label space."
        )


def deduplicate(indices: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
    """Keep one entry per dataset index, ordered by index.

    DistributedSampler pads the last batch with repeated samples, so gathered per-sample states
    can hold a dataset index twice; dropping the repeats (and sorting by index) makes a metric
    computed on any number of processes equal to the one-process value.
    """
    indices = indices.long().flatten()
    unique, inverse = torch.unique(indices, sorted=True, return_inverse=True)
    first = torch.full((unique.numel(),), indices.numel(), dtype=torch.long, device=indices.device)
    first.scatter_reduce_(0, inverse, torch.arange(indices.numel(), device=indices.device), reduce="amin")
    return (unique, *(v[first] for v in values))
