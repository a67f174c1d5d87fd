"""Prototype Similarity Score and parameter change as torchmetrics Metrics."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_unlearn.metrics.functional.weights import _prototype_similarity_update, parameter_change


class PrototypeSimilarity(Metric):
    """Prototype Similarity Score per class (Prototype Surgery (Liu et al., CCS 2025, Eq. 16).

    ``update(weight, reference_weight)`` with the head weights (K, E) of the unlearned and the
    reference model; ``compute`` returns the (K,) cosine similarities, averaged over updates
    (and processes, which hold the same weights).

    Example:
        >>> import torch
        >>> metric = PrototypeSimilarity(num_classes=3)
        >>> metric.update(torch.eye(3), torch.eye(3))
        >>> metric.compute().tolist()
        [1.0, 1.0, 1.0]
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("similarity_sum", default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, weight: Tensor, reference_weight: Tensor) -> None:
        sims = _prototype_similarity_update(weight, reference_weight)
        if sims.shape[0] != self.num_classes:
            raise ValueError(f"The heads have {sims.shape[0]} classes, expected num_classes={self.num_classes}.")
        self.similarity_sum += sims.to(self.similarity_sum)
        self.count += 1

    def compute(self) -> Tensor:
        if self.count == 0:
            raise ValueError("PrototypeSimilarity.compute() called before any update().")
        return self.similarity_sum / self.count


class ParameterChange(Metric):
    """Parameter change of an unlearned model vs the original (relative change: PRU, Zhang et al., ACML 2024, Eq. 6).

    ``update(model, original)``; ``compute`` returns ``{"l1", "l1_head", "relative"}`` with
    ``relative`` a tensor of ‖δ_l‖₂/‖θ_o,l‖₂ per parameter, in the order of :attr:`parameter_names`.
    """

    is_differentiable = False
    higher_is_better: bool | None = None
    full_state_update = False

    def __init__(self, head: str | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.head = head
        self.parameter_names: list[str] = []
        self.add_state("l1", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("l1_head", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("relative", default=[], dist_reduce_fx="cat")

    def update(self, model: nn.Module, original: nn.Module) -> None:
        change = parameter_change(model, original, self.head)
        names = list(change["relative"])  # type: ignore[arg-type]
        if self.parameter_names and names != self.parameter_names:
            raise ValueError("ParameterChange was updated with models of different architectures.")
        self.parameter_names = names
        self.l1 += float(change["l1"])  # type: ignore[arg-type]
        self.l1_head += float(change["l1_head"])  # type: ignore[arg-type]
        self.count += 1
        self.relative.append(torch.tensor([change["relative"][n] for n in names], dtype=torch.float64, device=self.device).unsqueeze(0))  # type: ignore[index]

    def compute(self) -> dict[str, Tensor]:
        if self.count == 0:
            raise ValueError("ParameterChange.compute() called before any update().")
        return {"l1": self.l1 / self.count, "l1_head": self.l1_head / self.count, "relative": dim_zero_cat(self.relative).mean(0)}
