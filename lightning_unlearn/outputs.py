"""One no-grad forward pass over a split: logits, labels, dataset indices (and embeddings).

Everything evaluated on a split (accuracy, MIA, entropy distance, ...) shares these
outputs, so each split costs exactly one forward pass per model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_unlearn.models.anatomy import Anatomy
from lightning_unlearn.passes import device_of, eval_mode

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

    from lightning_unlearn.data.datamodule import Split, UnlearningDataModule


@dataclass
class SplitOutputs:
    """Outputs of a model on one split, on the CPU, in loader order."""

    logits: Tensor
    labels: Tensor
    indices: Tensor
    embeddings: Tensor | None = None

    @property
    def probs(self) -> Tensor:
        return self.logits.softmax(dim=1)

    @property
    def accuracy(self) -> float:
        if self.labels.numel() == 0:
            raise ValueError("Accuracy of an empty split is undefined.")
        return (self.logits.argmax(dim=1) == self.labels).double().mean().item()


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, with_embeddings: bool = False, head: str | None = None) -> SplitOutputs:
    """Run ``model`` in eval mode over ``loader`` (batches of ``(x, y, index)`` or ``(x, y)``).

    The model's train/eval mode is restored afterwards.
    """
    device = device_of(model)
    anatomy = Anatomy(model, head=head) if with_embeddings else None
    logits, labels, indices, embeddings = [], [], [], []
    seen = 0
    with eval_mode(model):
        for batch in loader:
            x, y = batch[0].to(device), batch[1]
            idx = batch[2] if len(batch) > 2 else torch.arange(seen, seen + len(y))
            seen += len(y)
            if anatomy is not None:
                out, emb = anatomy.forward_with_embeddings(x)
                embeddings.append(emb.float().cpu())
            else:
                out = model(x)
            logits.append(out.float().cpu())
            labels.append(torch.as_tensor(y).cpu())
            indices.append(torch.as_tensor(idx).cpu())
    if not logits:
        raise ValueError("The loader yielded no batch: the split is empty.")
    return SplitOutputs(
        torch.cat(logits), torch.cat(labels).long(), torch.cat(indices).long(), torch.cat(embeddings) if embeddings else None
    )


class _Forward(LightningModule):
    """A network wrapped for :meth:`Trainer.predict`: each batch gives its outputs on the CPU."""

    def __init__(self, model: nn.Module, with_embeddings: bool, head: str | None) -> None:
        super().__init__()
        self.model = model
        self.anatomy = Anatomy(model, head=head) if with_embeddings else None

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> tuple[Tensor, ...]:
        x, y = batch[0], batch[1]
        emb = None
        if self.anatomy is not None:
            out, emb = self.anatomy.forward_with_embeddings(x)
        else:
            out = self.model(x)
        idx = torch.as_tensor(batch[2]).cpu() if len(batch) > 2 else torch.empty(0, dtype=torch.long)
        emb = emb.float().cpu() if emb is not None else torch.empty(0)
        return out.float().cpu(), torch.as_tensor(y).cpu(), idx, emb


def predict_with_trainer(
    model: nn.Module,
    loaders: Sequence[DataLoader],
    trainer: Trainer,
    with_embeddings: bool = False,
    head: str | None = None,
) -> list[SplitOutputs]:
    """:func:`predict` over each of ``loaders``, run by ``trainer.predict`` (one call for all loaders).

    The Trainer's accelerator, device and precision run the forward passes; on one CPU process at
    ``32-true`` the outputs equal :func:`predict`'s. A copy of ``model`` runs (the Trainer moves and,
    for ``*-true`` precisions, converts the module it runs), so ``model`` is left as it was. The
    passes are not split over processes: ``trainer`` must run on one device.

    Raises:
        ValueError: if ``trainer`` runs on several devices or processes, or a loader yields no batch.
    """
    if trainer.world_size > 1 or trainer.num_devices > 1:
        raise ValueError(
            f"The evaluation passes run on one device, but the Trainer runs on {trainer.num_devices} device(s) x"
            f" {trainer.num_nodes} node(s): give it `devices=1`."
        )
    loaders = list(loaders)
    if not loaders:
        return []
    wrapper = _Forward(copy.deepcopy(model), with_embeddings, head)
    predictions: Any = trainer.predict(wrapper, dataloaders=loaders, return_predictions=True)
    per_loader = predictions if len(loaders) > 1 else [predictions]
    outputs = []
    for batches in per_loader:
        if not batches:
            raise ValueError("The loader yielded no batch: the split is empty.")
        logits, labels, indices, embeddings = (torch.cat(parts) for parts in zip(*batches))
        if indices.numel() != labels.numel():  # (x, y) batches: positions in the loader
            indices = torch.arange(labels.numel())
        outputs.append(SplitOutputs(logits, labels.long(), indices.long(), embeddings if with_embeddings else None))
    return outputs


def predict_split(
    model: nn.Module, datamodule: UnlearningDataModule, split: Split, with_embeddings: bool = False, head: str | None = None
) -> SplitOutputs:
    """:func:`predict` over one split of an :class:`UnlearningDataModule`."""
    return predict(model, datamodule.dataloader(split), with_embeddings, head)


def split_accuracies(model: nn.Module, datamodule: UnlearningDataModule, splits: tuple[str, ...] | None = None) -> dict[str, float]:
    """Accuracy of ``model`` on each available split (default: forget, retain, test, and D_tf/D_tr if class-wise)."""
    if splits is None:
        splits = ("forget", "retain", "test", "test_forget", "test_retain")
    return {s: predict_split(model, datamodule, s).accuracy for s in splits if datamodule.has_split(s)}  # type: ignore[arg-type]
