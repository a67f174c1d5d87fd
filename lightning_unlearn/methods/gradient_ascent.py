"""Gradient Ascent (NegGrad): maximise the loss on the forget set."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.models.classifier import OptimizerName


@register_method("GradientAscent")
class GradientAscent(UnlearningMethod):
    """Gradient ascent on D_f: minimise ``-CE(f(x_f), y_f)``.

    The GA / NegGrad baseline (Thudi et al. 2022; Graves et al. 2021) compared in every
    method paper implemented here. It forgets fast and without retain data but runs away if
    left alone: the loss is unbounded, so the method halts with :class:`NonFiniteLossError` when the loss
    stops being finite, and is meant to be used with a small budget or a stopping rule.

    Args:
        model: the trained classifier.
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: epochs over D_f.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = GradientAscent(LeNet5(), lr=1e-4, max_epochs=2)
    """

    data_need = "forget"
    paper = (
        "Gradient ascent / NegGrad (Thudi et al., IEEE EuroS&P 2022; Graves et al., AAAI 2021),"
        " a baseline in every method paper implemented here."
    )
    limitation = (
        "it ascends on D_f alone, with nothing holding the retained classes: on larger models it damages them past"
        " the guard before a whole class is forgotten, at every learning rate the request tries and with a 3x step"
        " budget (measured: All-CNN on MNIST-5k, 1 of 10 classes served); on smaller models the unbounded ascent"
        " often turns the loss non-finite before the last samples of a class are forgotten"
        " (LeNet-5 on MNIST-5k: 9 of 30 class-wise requests served over 3 seeds, 12 ended by a non-finite loss);"
        " NegGradPlus adds the retain term."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 1e-4,
        max_epochs: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, max_epochs=max_epochs, **kwargs)

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        return -self.cross_entropy(batch)
