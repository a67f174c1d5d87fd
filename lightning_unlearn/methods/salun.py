"""SalUn: random-label unlearning restricted to the weights salient for the forget loss."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_unlearn.data.datamodule import TrainingData
from lightning_unlearn.data.seeding import index_random_other_label
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.checks import check_number
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.passes import eval_mode
from lightning_unlearn.models.classifier import OptimizerName

SALUN_STREAM = 0x5A1


def saliency_mask(gradients: list[Tensor], fraction: float) -> list[Tensor]:
    """Boolean masks selecting the ``fraction`` of entries with the largest ``|gradient|``, over all tensors jointly.

    Exactly ``round(fraction · n)`` entries are selected (ties broken by ``torch.topk``).

    Example:
        >>> [m.tolist() for m in saliency_mask([torch.tensor([0.1, -3.0]), torch.tensor([2.0, 0.0])], 0.5)]
        [[False, True], [True, False]]
    """
    flat = torch.cat([g.detach().abs().flatten().float() for g in gradients])
    k = int(round(fraction * flat.numel()))
    selected = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        selected[flat.topk(k, sorted=False).indices] = True
    return [part.view_as(g) for part, g in zip(selected.split([g.numel() for g in gradients]), gradients)]


@register_method("SalUn")
class SalUn(UnlearningMethod):
    """SalUn: a gradient-saliency mask, then random labels on D_f and cross-entropy on D_r, masked.

    1. Saliency (once, before the first step): the gradient of the forget loss
       ``CE(f(x_f), y_f)`` summed over D_f, for every parameter; the ``threshold`` fraction of
       weights with the largest ``|gradient|`` (over all parameters jointly) is salient.
    2. Unlearning: each step minimises ``CE(B_f, random labels) + CE(B_r, y)`` (one forward
       over the concatenated batch; epoch = one pass over D_f paired with random retain
       batches). Only salient weights change: their gradient is masked before the optimiser
       step and the non-salient weights are re-imposed after it, so they stay bit-identical
       even under weight decay and momentum. Random labels are drawn per dataset index.

    The mask is broadcast from rank 0 under DDP, and the mask with the frozen values is
    saved in the checkpoint.

    Cite: Fan, Liu, Zhang, Wong, Wei, Liu. "SalUn: Empowering Machine Unlearning via
    Gradient-based Weight Saliency in Both Image Classification and Generation", ICLR 2024.

    Deviations:
        - Epoch = one pass over D_f, each forget batch paired with an equal-size retain batch
          (the authors iterate over D_f ∪ D_r); the random label is never the true one.

    Args:
        model: the trained classifier.
        threshold: fraction of all weights that are salient (updated), in (0, 1].
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: passes over D_f.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Raises:
        ValueError: for ``threshold`` outside (0, 1], or an empty retain set.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = SalUn(LeNet5(), threshold=0.5, max_epochs=2)
    """

    data_need = "both"
    paper = "SalUn: Gradient-based Weight Saliency (Fan et al., ICLR 2024)."

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 5e-4,
        weight_decay: float = 5e-4,
        max_epochs: int = 2,
        threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs, **kwargs)
        check_number("threshold", threshold, "in (0, 1] (fraction of salient weights)", lambda v: 0.0 < v <= 1.0)
        weights = sum(p.numel() for p in self.trainable_parameters())
        if int(round(threshold * weights)) < 1:  # no salient weight: every update would be masked out
            raise ValueError(f"`threshold`={threshold!r} selects no weight of the model's {weights} trainable weights"
                             f" (the model would be returned unchanged): give at least {1 / weights:.2g}.")
        self.threshold = float(threshold)
        self.masks: list[Tensor] | None = None  # per trainable parameter: True = salient (updated)
        self.frozen_values: list[Tensor] | None = None  # the parameters at the start (non-salient part is kept)

    # ----------------------------------------------------------------- saliency
    @property
    def training_data(self) -> TrainingData:
        """One epoch is one pass over D_f, each forget batch paired with a retain batch of the same size."""
        return TrainingData(("forget", "retain"), epoch="forget")

    def compute_saliency(self) -> list[Tensor]:
        """``Σ_{D_f} ∇ CE`` of every trainable parameter (one forward/backward pass over the data module's D_f)."""
        params = self.trainable_parameters()
        sums = [torch.zeros_like(p) for p in params]
        with torch.enable_grad(), eval_mode(self.model):  # no BatchNorm statistics are updated by the saliency pass
            for x, y, _ in self.datamodule.dataloader("forget"):
                loss = F.cross_entropy(self(x.to(self.device)), y.to(self.device), reduction="sum")
                for acc, grad in zip(sums, torch.autograd.grad(loss, params)):
                    acc += grad
        return sums

    def prepare_unlearning(self) -> None:
        params = self.trainable_parameters()
        if self.masks is None:
            masks = saliency_mask(self.compute_saliency(), self.threshold)
            self.masks = self.trainer.strategy.broadcast(masks, src=0)
            self.frozen_values = [p.detach().clone() for p in params]
        self.masks = [m.to(p.device) for m, p in zip(self.masks, params)]
        self.frozen_values = [v.to(p.device, p.dtype) for v, p in zip(self.frozen_values or [], params)]

    # ------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.trainable_parameters())
        optimizer.register_step_post_hook(lambda *_: self.restore_masked())
        return self.optimization([optimizer])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.masks is None:
            return
        for param, mask in zip(self.trainable_parameters(), self.masks):
            if param.grad is not None:
                param.grad.mul_(mask)

    @torch.no_grad()
    def restore_masked(self) -> None:
        """Re-impose the exact original values of the non-salient weights."""
        if self.masks is None or self.frozen_values is None:
            return
        for param, mask, value in zip(self.trainable_parameters(), self.masks, self.frozen_values):
            param.copy_(torch.where(mask, param, value))

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        x_r, y_r, _ = batch["retain"]
        x_f, y_f, index_f = batch["forget"]
        random = index_random_other_label(index_f, y_f, self.num_classes, self.hparams.seed, SALUN_STREAM)
        logits = self(torch.cat([x_r, x_f]))
        n_r = x_r.shape[0]
        return F.cross_entropy(logits[:n_r], y_r) + F.cross_entropy(logits[n_r:], random)

    # ------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.masks is not None and self.frozen_values is not None:
            checkpoint["salun"] = {"masks": [m.cpu() for m in self.masks], "frozen_values": [v.cpu() for v in self.frozen_values]}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "salun" in checkpoint:
            self.masks = [m.to(self.device) for m in checkpoint["salun"]["masks"]]
            self.frozen_values = [v.to(self.device) for v in checkpoint["salun"]["frozen_values"]]
