"""Boundary Shrink: relabel every forget sample with its nearest wrong class, found by an FGSM step."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.checks import check_number
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.passes import eval_mode
from lightning_unlearn.models.classifier import OptimizerName, split_batch

BOUNDARY_PAPER = (
    "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision Boundary"
    " (Chen et al., CVPR 2023)."
)


def neighbour_labels(model: nn.Module, x: Tensor, y: Tensor, epsilon: float) -> Tensor:
    """The nearest wrong class of every sample: the prediction at ``x + ε·sign(∇_x CE(f(x), y))``.

    The FGSM step moves each sample across (or toward) its closest decision boundary; the
    label is the argmax of the perturbed logits over the classes other than ``y``, so it is
    always a wrong class. Gradients flow to the input only (the model's ``.grad`` is untouched).

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> labels = neighbour_labels(LeNet5(), torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]), 0.3)
        >>> bool((labels != torch.tensor([0, 1, 2, 3])).all())
        True
    """
    with torch.enable_grad():
        x_adv = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
    with torch.no_grad():
        logits = model(x + epsilon * grad.sign())
        logits[torch.arange(y.numel(), device=y.device), y] = float("-inf")
        return logits.argmax(dim=1)


@register_method("BoundaryShrink")
class BoundaryShrink(UnlearningMethod):
    """Boundary Shrink: fine-tune on D_f relabelled with each sample's nearest wrong class.

    Neighbour search (Chen et al. 2023): a sample is perturbed by one FGSM step of size
    ``epsilon`` against the ORIGINAL model, and the class predicted for the perturbed sample
    becomes its new label; the model is then fine-tuned on the relabelled forget set, which
    shrinks the forgotten decision region into its neighbours. Because the labels depend only
    on the original model, they are computed once, before the first step (one forward and
    backward pass over D_f), kept per dataset index and saved in the checkpoint.

    Cite: Chen, Gao, Liu, Peng, Wang. "Boundary Unlearning: Rapid Forgetting of Deep Networks
    via Shifting the Decision Boundary", CVPR 2023.

    Deviations:
        - When the FGSM step does not cross a boundary the label is the top wrong class of the
          perturbed logits (the authors' code keeps the perturbed argmax, which can be the true label).
        - No clamping of the perturbed input to [0, 1] (inputs here are normalised); the
          labels are cached once instead of being recomputed on every batch (same labels).
        - Model in eval mode for the search (no BatchNorm statistics are updated by it).

    Args:
        model: the trained classifier.
        epsilon: FGSM step size, in input units (> 0).
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: passes over D_f.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Raises:
        ValueError: for ``epsilon`` <= 0.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = BoundaryShrink(LeNet5(), epsilon=0.3, max_epochs=2)
    """

    data_need = "forget"
    paper = BOUNDARY_PAPER
    limitation = (
        "it moves D_f across its nearest decision boundary using D_f alone, with nothing holding the retained"
        " classes: on larger models it damages them past the guard before a whole class is forgotten (measured:"
        " All-CNN on MNIST-5k, 4 of 10 classes served); NegGradPlus, UGradSLPlus or SalUn train on D_r as well."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 1.5e-4,
        max_epochs: int = 1,
        epsilon: float = 0.3,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, max_epochs=max_epochs, **kwargs)
        check_number("epsilon", epsilon, "> 0 (FGSM step in input units)", lambda v: v > 0)
        self.epsilon = float(epsilon)
        self.neighbour_table: Tensor | None = None  # dataset index -> neighbour label (-1: not in D_f)

    def prepare_unlearning(self) -> None:
        if self.neighbour_table is not None:  # restored from a checkpoint
            self.neighbour_table = self.neighbour_table.to(self.device)
            return
        dm = self.datamodule
        table = torch.full((int(dm.forget_indices.max()) + 1,), -1, dtype=torch.long, device=self.device)
        with eval_mode(self.model):
            for x, y, index in dm.dataloader("forget"):
                x, y, index = x.to(self.device), y.to(self.device), index.to(self.device)
                table[index] = neighbour_labels(self.model, x, y, self.epsilon)
        self.neighbour_table = table

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, _ = split_batch(batch)
        return F.cross_entropy(self(x), self.neighbour_table[batch[2]])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.neighbour_table is not None:
            checkpoint["boundary_shrink_neighbours"] = self.neighbour_table.cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "boundary_shrink_neighbours" in checkpoint:
            self.neighbour_table = checkpoint["boundary_shrink_neighbours"].to(self.device)
