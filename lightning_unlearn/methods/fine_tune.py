"""Fine-Tune: continue training on the retain set only (catastrophic forgetting of D_f)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.models.classifier import OptimizerName


@register_method("FineTune")
class FineTune(UnlearningMethod):
    """Fine-tune the trained classifier on D_r with cross-entropy.

    The baseline "FT" of Golatkar et al. (2020) / Warnecke et al. (2023) as compared in
    the UGradSL and Prototype Surgery papers: forgetting comes only from
    catastrophic forgetting while the model keeps fitting the retain data.

    Args:
        model: the trained classifier.
        optimizer: optimiser name (default SGD, as in the papers).
        lr: learning rate.
        max_epochs: epochs over D_r.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = FineTune(LeNet5(), lr=0.01, max_epochs=2)
    """

    data_need = "retain"
    paper = "Fine-tuning on D_r (FT; Golatkar et al., CVPR 2020), baseline in the Prototype Surgery and UGradSL papers."
    limitation = (
        "it forgets only by catastrophic forgetting while it fits D_r, which on a model that still recognises the"
        " forgotten class from what it shares with the others can outlast any budget (measured: All-CNN on MNIST-5k,"
        " 5 of 10 classes served; the other five still had forget accuracies of 0.41-0.98 when the guard or the budget,"
        " once extended, ended them); NegGradPlus or UGradSLPlus add a term that forgets."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 0.02,
        weight_decay: float = 5e-4,
        max_epochs: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs, **kwargs)

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.cross_entropy(batch)
