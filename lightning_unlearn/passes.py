"""Every pass over a split outside the training loop: eval mode, precision, sharding, gathering.

* :func:`eval_mode` -- a context manager that puts a model in eval mode and always restores it;
* :func:`forward_context` -- the Trainer's precision context (autocast under ``bf16-mixed``);
* :func:`shard_loader` -- this process's share of a split, without the padding
  ``DistributedSampler`` adds (every sample is seen by exactly one process);
* :func:`embedding_pass` -- one no-grad pass yielding logits, embeddings, labels and dataset indices;
* :func:`gather_rows` -- concatenate unequal per-process tensors;
* :func:`class_counts` -- correct predictions and sample counts per class, summed over processes;
* :func:`logits_pass` -- every sample's logits and label, gathered from all processes (what the request
  checks decide on: each process sees its own share, so the result does not depend on their number).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from lightning_unlearn.models.anatomy import Anatomy
from lightning_unlearn.models.classifier import split_batch

if TYPE_CHECKING:
    from lightning.pytorch import Trainer


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def forward_context(trainer: Trainer | None) -> contextlib.AbstractContextManager:
    """The precision plugin's forward context (autocast under ``bf16-mixed``), or a no-op."""
    if trainer is None:
        return contextlib.nullcontext()
    return trainer.precision_plugin.forward_context()


def rank_world(trainer: Trainer | None) -> tuple[int, int]:
    """``(global_rank, world_size)`` of ``trainer``, ``(0, 1)`` without one."""
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block; its train/eval mode is restored even on an error."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def shard_loader(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    """A sequential loader over this process's share ``rank::world_size`` of ``loader``'s dataset.

    Unlike DistributedSampler it pads nothing: every sample is seen by exactly one process,
    so sums over processes equal the single-process sum.
    """
    if world_size == 1 and loader.sampler is not None and type(loader.sampler).__name__ == "SequentialSampler":
        return loader
    dataset = loader.dataset
    n = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        Subset(dataset, range(rank, n, world_size)),
        batch_size=loader.batch_size or 256,
        shuffle=False,
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
    )


def embedding_pass(
    anatomy: Anatomy, loader: DataLoader, trainer: Trainer | None = None
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Yield ``(logits, embeddings, labels, indices)`` per batch: one no-grad eval-mode pass.

    Under several processes each one sees its own share of the data (no padding).
    Batches are ``(x, y, index)`` or ``(x, y)`` (then the index is the position in the dataset).
    """
    rank, world = rank_world(trainer)
    loader = shard_loader(loader, rank, world)
    device = device_of(anatomy.model)
    position = rank
    with torch.no_grad(), eval_mode(anatomy.model):
        for batch in loader:
            x, y = split_batch(batch)
            if len(batch) > 2:
                idx = torch.as_tensor(batch[2])
            else:
                idx = torch.arange(len(y)) * world + position
            position += len(y) * world
            with forward_context(trainer):
                logits, emb = anatomy.forward_with_embeddings(x.to(device, non_blocking=True))
            yield logits, emb, torch.as_tensor(y).to(device), idx.to(device)


def gather_rows(tensor: Tensor, trainer: Trainer | None = None) -> Tensor:
    """Concatenate along dim 0 the (possibly unequal) ``tensor`` of every process."""
    if trainer is None or trainer.world_size == 1:
        return tensor
    strategy = trainer.strategy
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = strategy.all_gather(size).reshape(-1).tolist()
    pad = tensor.new_zeros((int(max(sizes)) - tensor.shape[0], *tensor.shape[1:]))
    gathered = strategy.all_gather(torch.cat([tensor, pad]))
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(sizes)])


def class_counts(model: nn.Module, loader: DataLoader, num_classes: int, trainer: Trainer | None = None) -> tuple[Tensor, Tensor]:
    """``(correct, total)``: per-class correct predictions and samples of ``model`` on ``loader``.

    One no-grad eval-mode pass; under several processes each sees its own unpadded share and the
    counts are summed, so the result equals the single-process one. Both are CPU int64 tensors of
    length ``num_classes``.
    """
    rank, world = rank_world(trainer)
    device = device_of(model)
    correct = torch.zeros(num_classes, dtype=torch.long, device=device)
    total = torch.zeros(num_classes, dtype=torch.long, device=device)
    with torch.no_grad(), eval_mode(model):
        for batch in shard_loader(loader, rank, world):
            x, y = split_batch(batch)
            y = torch.as_tensor(y).to(device)
            with forward_context(trainer):
                hit = model(x.to(device, non_blocking=True)).argmax(dim=1) == y
            total += torch.bincount(y, minlength=num_classes)[:num_classes]
            correct += torch.bincount(y[hit], minlength=num_classes)[:num_classes]
    if trainer is not None and world > 1:
        correct = trainer.strategy.reduce(correct, reduce_op="sum")
        total = trainer.strategy.reduce(total, reduce_op="sum")
    return correct.cpu().long(), total.cpu().long()


def logits_pass(model: nn.Module, loader: DataLoader, num_classes: int, trainer: Trainer | None = None) -> tuple[Tensor, Tensor]:
    """``(logits, labels)`` of every sample of ``loader``, in the loader's order: one no-grad eval-mode pass,
    each process over its own share, gathered from all (CPU; logits in float32), so every process holds the
    same rows in the same order as one process would (sums over them then round alike too)."""
    rank, world = rank_world(trainer)
    device = device_of(model)
    logits, labels = [], []
    with torch.no_grad(), eval_mode(model):
        for batch in shard_loader(loader, rank, world):
            x, y = split_batch(batch)
            with forward_context(trainer):
                logits.append(model(x.to(device, non_blocking=True)).float())
            labels.append(torch.as_tensor(y).to(device))
    if not logits:  # a share with no sample (fewer samples than processes)
        logits, labels = [torch.zeros(0, num_classes, device=device)], [torch.zeros(0, dtype=torch.long, device=device)]
    out, target = torch.cat(logits), torch.cat(labels)
    if trainer is not None and world > 1:
        position = torch.arange(rank, len(loader.dataset), world, device=out.device)  # type: ignore[arg-type]
        out, target, position = (gather_rows(t, trainer) for t in (out, target, position))
        order = position.argsort()
        out, target = out[order], target[order]
    return out.cpu(), target.cpu().long()
