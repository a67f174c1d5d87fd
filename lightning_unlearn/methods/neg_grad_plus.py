"""NegGrad+: descent on D_r and ascent on D_f in one mixed step (Kurmanji et al., NeurIPS 2023)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from lightning_unlearn.methods.mixed_gradient import MixedGradientMethod
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.models.classifier import OptimizerName


@register_method("NegGradPlus")
class NegGradPlus(MixedGradientMethod):
    """NegGrad+: minimise ``β·mean CE(B_r) − (1 − β)·mean CE(B_f)``.

    The strengthened NegGrad baseline of the SCRUB paper: gradient ascent on the forget set
    regularised by gradient descent on the retain set. One epoch is one pass over D_r with
    D_f cycled (as in the authors' code); retain and forget batches of the same size are
    concatenated and go through one forward/backward pass. It is UGradSL+ without label
    smoothing (``alpha = 0``).

    Cite: Kurmanji, Triantafillou, Hayes, Triantafillou. "Towards Unbounded Machine
    Unlearning", NeurIPS 2023 (NegGrad+ baseline).

    Deviations:
        - One optimiser step per mixed batch, both terms batch means (the authors' loop is the same).

    Args:
        model: the trained classifier.
        retain_weight: ``β``, the weight of the retain term, in [0, 1].
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: passes over D_r.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Raises:
        ValueError: for ``retain_weight`` outside [0, 1], or an empty retain set (the message
            lists the retain-free methods).
        NonFiniteLossError: when the ascent runs away.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = NegGradPlus(LeNet5(), retain_weight=0.9, max_epochs=1)
    """

    paper = "Towards Unbounded Machine Unlearning (Kurmanji et al., NeurIPS 2023): the NegGrad+ baseline."
    primary = "retain"

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 3e-3,
        weight_decay: float = 5e-4,
        max_epochs: int = 1,
        retain_weight: float = 0.98,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs, **kwargs)
        if not isinstance(retain_weight, (int, float)) or not 0.0 <= retain_weight <= 1.0:
            raise ValueError(f"`retain_weight` must be in [0, 1], got {retain_weight!r}.")
        self._set_mixing(retain_weight, 0.0, 0.0)
