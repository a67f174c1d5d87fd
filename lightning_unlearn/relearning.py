"""The relearning test (PRU, Zhang et al., ACML 2024, §5.3): does forgotten knowledge come back?

A copy of the unlearned model is fine-tuned on D_new (samples never seen during training),
without the forgotten classes when the request forgets whole classes (a sub-class, random or
index request forgets no class: every D_new sample is used), and the accuracy on the forgotten
data is recorded after every epoch. A model that truly forgot stays low; a
model whose forgetting was only a shifted decision boundary recovers quickly.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from lightning_unlearn.data.seeding import index_uniform
from lightning_unlearn.models.classifier import split_batch
from lightning_unlearn.outputs import predict
from lightning_unlearn.passes import device_of, forward_context

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

    from lightning_unlearn.data.datamodule import UnlearningDataModule


@dataclass
class RelearningResult:
    """Forget accuracy before relearning (epoch 0) and after every relearning epoch."""

    probe_split: str
    forget_accuracy: list[float] = field(default_factory=list)
    threshold: float | None = None
    relearn_epochs: int | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def relearn(
    model: nn.Module,
    datamodule: UnlearningDataModule,
    epochs: int = 10,
    lr: float = 1e-3,
    momentum: float = 0.9,
    batch_size: int = 64,
    threshold: float | None = None,
    seed: int = 0,
    trainer: Trainer | None = None,
) -> RelearningResult:
    """Fine-tune a copy of ``model`` on D_new (without the forgotten classes, if any) and track forget accuracy.

    Args:
        model: the unlearned model (left unchanged: a copy is fine-tuned).
        datamodule: needs a non-empty D_new (``new_fraction > 0``).
        epochs: relearning epochs (default 10).
        lr: SGD learning rate (default 1e-3).
        momentum: SGD momentum (default 0.9: PRU paper §5.1 keeps every setting of the original
            training other than the learning rate, and the original is trained with momentum 0.9).
        batch_size: relearning batch size.
        threshold: forget accuracy that counts as "recovered"; ``relearn_epochs`` is the
            first epoch reaching it (``None`` when it never does).
        seed: seed of the shuffling (keyed by dataset index).
        trainer: the Trainer of the run the model comes from (e.g. the unlearning run, as
            :class:`~lightning_unlearn.callbacks.RelearningProbe` passes it): the relearning steps then run
            under its precision (autocast, and its gradient scaler under ``16-mixed``) on the model's device,
            as the run's own steps did. Without it: full precision on the model's device.

    Returns:
        The forget accuracy (on D_tf for class-wise forgetting, else on D_f) per epoch.

    Raises:
        ValueError: if D_new is empty or has no sample of a retained class, or for bad arguments.
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1, got {epochs}.")
    if lr <= 0:
        raise ValueError(f"`lr` must be > 0, got {lr}.")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}.")
    if not datamodule.has_split("new"):
        raise ValueError("Relearning needs D_new: build the data module with `new_fraction` > 0.")
    new_ds = datamodule.split_dataset("new")
    targets = datamodule.split_targets("new")
    classes = datamodule.forget_classes or []
    keep = np.flatnonzero(~np.isin(targets, classes))
    if keep.size == 0:
        raise ValueError("D_new has no sample of a retained class to relearn from.")
    probe_split = "test_forget" if datamodule.has_split("test_forget") else "forget"
    probe_loader = datamodule.dataloader(probe_split)  # type: ignore[arg-type]

    student = copy.deepcopy(model)
    device = device_of(student)
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=momentum)
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)  # 16-mixed: a GradScaler
    base = Subset(new_ds, keep.tolist())
    result = RelearningResult(probe_split, [predict(student, probe_loader).accuracy], threshold)
    for epoch in range(epochs):
        # Shuffle keyed by dataset index and epoch: independent of the process layout.
        order = np.argsort(index_uniform(torch.as_tensor(keep), seed, stream=epoch).numpy())
        loader = DataLoader(Subset(base, order.tolist()), batch_size=batch_size)
        student.train()
        for batch in loader:
            x, y = split_batch(batch)
            with forward_context(trainer):
                loss = nn.functional.cross_entropy(student(x.to(device)), y.to(device))
            optimizer.zero_grad()
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        result.forget_accuracy.append(predict(student, probe_loader).accuracy)
        if threshold is not None and result.relearn_epochs is None and result.forget_accuracy[-1] >= threshold:
            result.relearn_epochs = epoch + 1
    return result
