"""The family of methods that mix descent on D_r with ascent on D_f in one step: UGradSL, UGradSL+ and NegGrad+."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from lightning_unlearn.data.datamodule import TrainingData
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.label_smoothing import adaptive_smoothing_rate, gls_cross_entropy
from lightning_unlearn.models.classifier import split_batch


def _check_unit(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}.")


class MixedGradientMethod(UnlearningMethod):
    """Base of the methods that descend on D_r and ascend on D_f in ONE backward pass: UGradSL, UGradSL+, NegGrad+.

    Loss ``p·mean CE(B_r) − (1 − p)·mean CE_GLS(B_f, α)``: the retain and forget batches are
    concatenated, the model runs one forward pass, and the logits (and embeddings, for the
    self-adaptive α) are split. ``alpha=None`` selects the self-adaptive rate. Every batch is
    ``{"forget": (x, y, index), "retain": (x, y, index)}`` (see :attr:`training_data`).
    """

    data_need = "both"
    primary: ClassVar[Literal["forget", "retain"]] = "forget"

    def _set_mixing(self, p: float, alpha: float | None, beta: float) -> None:
        _check_unit("p", p)
        _check_unit("beta", beta)
        if alpha is not None and (not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha > 1):
            raise ValueError(f"`alpha` must be None (self-adaptive) or a finite smoothing rate <= 1, got {alpha!r}.")
        self.p, self.alpha, self.beta = float(p), alpha, float(beta)

    @property
    def training_data(self) -> TrainingData:
        """Forget and retain batches of equal size, paired step by step; one epoch is one pass over
        :attr:`primary`, the other split cycled when shorter and truncated when longer."""
        return TrainingData(("forget", "retain"), epoch=self.primary)

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        x_r, y_r = split_batch(batch["retain"])
        x_f, y_f = split_batch(batch["forget"])
        n_r = x_r.shape[0]
        if self.alpha is None:
            logits, embeddings = self.forward_with_embeddings(torch.cat([x_r, x_f]))
            alpha: float | Tensor = adaptive_smoothing_rate(embeddings[:n_r], embeddings[n_r:], self.beta)
        else:
            logits, alpha = self(torch.cat([x_r, x_f])), self.alpha
        retain_loss = F.cross_entropy(logits[:n_r], y_r)
        forget_loss = gls_cross_entropy(logits[n_r:], y_f, alpha)
        self.log_dict({"train/retain_loss": retain_loss.detach(), "train/forget_loss": forget_loss.detach()})
        return self.p * retain_loss - (1.0 - self.p) * forget_loss
