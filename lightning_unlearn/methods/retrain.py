"""Retrain: train a freshly initialised copy of the architecture on D_r (the gold standard)."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import register_method


def reset_parameters(model: nn.Module, seed: int) -> None:
    """Re-initialise every submodule that defines ``reset_parameters`` (seeded)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


@register_method("Retrain")
class Retrain(UnlearningMethod):
    """Retrain from scratch on the retain set: the reference every method is measured against.

    The classifier's architecture is kept and every layer is re-initialised (seeded), then
    trained with cross-entropy on D_r. Exact but slow: it costs a full training run.

    Args:
        model: the trained classifier (only its architecture is used).
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: training epochs (match the original training).
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = Retrain(LeNet5(), max_epochs=10)
    """

    data_need = "retain"
    paper = "Retraining from scratch on the retain set (the exact-unlearning reference of every method paper)."

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        lr: float = 1e-3,
        max_epochs: int = 10,
        seed: int = 0,
        target: float | Literal["auto"] | None = None,
        guard: float | None = None,
        **kwargs: Any,
    ) -> None:
        # The reference trains its whole budget: its "before" is a fresh network, so neither a target nor a
        # guard measured on it means anything (a random network already "forgets" every class).
        super().__init__(model, lr=lr, max_epochs=max_epochs, seed=seed, target=target, guard=guard, **kwargs)
        reset_parameters(self.model, seed)

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.cross_entropy(batch)
