"""One no-grad forward pass over a split: logits, labels, dataset indices (and embeddings).

Everything evaluated on a split (accuracy, MIA, entropy distance, ...) shares these
outputs, so each split costs exactly one forward pass per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_unlearn.models.anatomy import Anatomy
from lightning_unlearn.passes import device_of, eval_mode

if TYPE_CHECKING:
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
