"""A plain supervised classifier: trains the original and the retrained model."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_unlearn.models.networks import ModelName, build_model
from lightning_unlearn.optim import (
    OPTIMIZATION_ARGUMENTS,
    OptimizerName,
    add_records,
    build_optimizer,
    check_optimizer,
    check_scheduler,
    optimization,
)
from lightning_unlearn.serialization import tuples_as_lists


def split_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a batch of ``(x, y)`` or ``(x, y, index)``."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(f"A batch must be a tuple (x, y) or (x, y, index), got {type(batch).__name__}.")


class Classifier(LightningModule):
    """Cross-entropy training of a classifier, with accuracy logged by torchmetrics.

    Logs ``train/loss`` and ``train/acc``; ``test/acc`` under ``trainer.test``. The validation
    accuracy is named after the split validation runs on: ``val/<split>_acc`` when the data module
    says which split its ``val_dataloader`` serves (a ``val_split`` attribute; an
    :class:`~lightning_unlearn.data.UnlearningDataModule` serves the test split D_t, so
    ``val/test_acc``), else ``val/acc``. Monitor that key, e.g.
    ``ModelCheckpoint(monitor="val/test_acc", mode="max")``.

    Args:
        model: an ``nn.Module`` or the name of a reference network.
        num_classes: number of classes.
        input_shape: (C, H, W) of the inputs, used when ``model`` is a name.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (with ``lr``, ``weight_decay``, ``momentum``), or a
            callable that takes the parameters and returns any ``torch.optim`` optimiser, e.g.
            ``functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)`` (YAML: ``class_path`` and
            ``init_args``); its own arguments then rule, and ``lr``, ``weight_decay`` and ``momentum``
            are not used.
        lr: learning rate.
        weight_decay: weight decay.
        momentum: SGD momentum.
        lr_scheduler: a callable that takes the optimiser and returns a learning-rate schedule, e.g.
            ``functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)``; stepped once
            per epoch (a ReduceLROnPlateau watches ``train/loss``).

    Example:
        >>> clf = Classifier("lenet5", num_classes=10, input_shape=(1, 28, 28))
        >>> clf(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        model: nn.Module | ModelName = "lenet5",
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        optimizer: OptimizerName | OptimizerCallable = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        check_optimizer(optimizer)
        check_scheduler(lr_scheduler)
        self.save_hyperparameters(ignore=["model", *OPTIMIZATION_ARGUMENTS] if isinstance(model, nn.Module)
                                  else list(OPTIMIZATION_ARGUMENTS))
        # A logged hparams.yaml holds plain lists, not !!python/tuple, and optimisers as class_path records.
        self._optimizer_arguments = {"optimizer": optimizer, "lr_scheduler": lr_scheduler}  # hparams hold their records
        self._hparams = tuples_as_lists(add_records(self._hparams, self._optimizer_arguments))
        self._hparams_initial = tuples_as_lists(add_records(self._hparams_initial, self._optimizer_arguments))
        self.model = build_model(model, num_classes, tuple(input_shape)) if isinstance(model, str) else model
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = split_batch(batch)
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    @property
    def val_key(self) -> str:
        """The key of the validation accuracy: ``val/<split>_acc`` when the data module names its validation split."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        split = getattr(datamodule, "val_split", None)
        return f"val/{split}_acc" if isinstance(split, str) and split else "val/acc"

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = split_batch(batch)
        self.val_acc(self(x), y)
        self.log(self.val_key, self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = split_batch(batch)
        self.val_acc(self(x), y)
        self.log("test/acc", self.val_acc, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """The ``optimizer`` of every parameter, with its ``lr_scheduler`` when one is given."""
        hp, given = self.hparams, self._optimizer_arguments
        optimizer = build_optimizer(self.parameters(), given["optimizer"], hp.lr, hp.weight_decay, hp.momentum)
        return optimization([optimizer], given["lr_scheduler"])
