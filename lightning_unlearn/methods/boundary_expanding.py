"""Boundary Expanding: route the forget set to a temporary shadow class, then prune it."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.boundary_shrink import BOUNDARY_PAPER
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.models.classifier import OptimizerName, split_batch


@register_method("BoundaryExpanding")
class BoundaryExpanding(UnlearningMethod):
    """Boundary Expanding: train D_f into an extra "shadow" output unit, then prune the unit.

    The head is widened by one shadow class (a new prototype row and bias, initialised like
    a fresh ``nn.Linear`` row, seeded); the whole network is fine-tuned with cross-entropy
    over the ``K + 1`` logits with every forget sample labelled as the shadow class, which
    expands the shadow region over the forgotten samples; the shadow unit is then pruned.
    The shadow unit lives in this method, outside the user's classifier, so "pruning" is
    dropping it: the returned classifier has exactly the original head shape and type.

    Cite: Chen, Gao, Liu, Peng, Wang. "Boundary Unlearning: Rapid Forgetting of Deep Networks
    via Shifting the Decision Boundary", CVPR 2023.

    Deviations:
        - The widened head is ``[head(e), shadow(e)]`` computed from the same embedding ``e``
          (one forward pass), instead of a copied ``K+1``-way linear layer.

    Args:
        model: the trained classifier.
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: passes over D_f.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = BoundaryExpanding(LeNet5(), max_epochs=2)
        >>> tuple(method.shadow_weight.shape)
        (1, 84)
    """

    needs_head_output = "adds a shadow class as a new neuron of the final linear layer"
    data_need = "forget"
    paper = BOUNDARY_PAPER
    limitation = (
        "it forgets through a shadow class trained on D_f alone, then prunes it: on larger models the retained"
        " classes move past the guard before a whole class is forgotten (measured: All-CNN on MNIST-5k, 0 of 10"
        " classes served), and once the shadow class takes D_f its loss vanishes, so pruning the unit can give part"
        " of D_f back to its class (measured: an MLP on scikit-learn's digits, D_f's accuracy stalled at 0.25-0.66"
        " within the guard, 0 of 6 class-wise requests served); NegGradPlus, UGradSLPlus or SalUn train on D_r as well."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 1.5e-4,
        max_epochs: int = 1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, max_epochs=max_epochs, seed=seed, **kwargs)
        self._add_shadow_neuron()

    def _add_shadow_neuron(self) -> None:
        dim = self.anatomy.embedding_dim
        head_param = self.anatomy.head.weight
        generator = torch.Generator().manual_seed(self.hparams.seed)
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's default initialisation range
        weight = (torch.rand(1, dim, generator=generator) * 2 - 1) * bound
        bias = (torch.rand(1, generator=generator) * 2 - 1) * bound
        self.shadow_weight = nn.Parameter(weight.to(head_param.dtype))
        self.shadow_bias = nn.Parameter(bias.to(head_param.dtype))

    def on_head_located(self, guessed: nn.Module) -> None:
        self._add_shadow_neuron()  # of the width of the head the forward pass uses

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*super().trainable_parameters(), self.shadow_weight, self.shadow_bias]

    def widened_logits(self, x: Tensor) -> Tensor:
        """``K + 1`` logits: the classifier's and the shadow class's (last column)."""
        logits, embeddings = self.forward_with_embeddings(x)
        shadow = F.linear(embeddings, self.shadow_weight, self.shadow_bias)
        return torch.cat([logits, shadow], dim=1)

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, _ = split_batch(batch)
        shadow_class = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        return F.cross_entropy(self.widened_logits(x), shadow_class)
