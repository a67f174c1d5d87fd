"""What the original training records for Prototype Surgery: W0, the Gram matrix of the training embeddings.

The record (:class:`PrototypeRecording`), the pass that accumulates the Gram matrix (:func:`gram_pass`)
and the head as one matrix (:func:`head_matrix`). The callback that records them during the user's
fit is :class:`~lightning_unlearn.callbacks.PrototypeRecorder`; the methods that use them (NaivePS)
import this module, not the callback's.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any
import torch
from lightning.pytorch import Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader
from lightning_unlearn.atomic import save_atomic
from lightning_unlearn.models.anatomy import Anatomy
from lightning_unlearn.passes import device_of, embedding_pass
from lightning_unlearn.serialization import load_trusted

RECORDING_VERSION = 1


def augment(embeddings: Tensor) -> Tensor:
    """Append the constant-1 column (the bias is unlearned as one more prototype column), in float64."""
    emb = embeddings.to(torch.float64)
    return torch.cat([emb, emb.new_ones(emb.shape[0], 1)], dim=1)


def _accumulation_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def gram_pass(anatomy: Anatomy, loader: DataLoader, trainer: Trainer | None = None) -> tuple[Tensor, Tensor]:
    """``(G, indices)``: ``G = Σ x̃ᵀx̃`` over ``loader`` (bias-augmented, float64, summed over processes).

    ``indices`` are the dataset indices this process saw (gather them with :func:`gather_rows`).
    """
    device = device_of(anatomy.model)
    dim = anatomy.embedding_dim + 1
    gram = torch.zeros(dim, dim, dtype=_accumulation_dtype(device), device=device)
    seen = []
    for _, emb, _, idx in embedding_pass(anatomy, loader, trainer):
        x = augment(emb).to(gram.dtype)
        gram.addmm_(x.T, x)
        seen.append(idx)
    if trainer is not None and trainer.world_size > 1:
        gram = trainer.strategy.reduce(gram, reduce_op="sum")
    indices = torch.cat(seen) if seen else torch.empty(0, dtype=torch.long, device=device)
    return gram.to("cpu", torch.float64), indices.long()


def head_matrix(head: nn.Linear) -> Tensor:
    """The head as one ``(C, E+1)`` float64 matrix ``[W | b]`` (b = 0 for a head without bias)."""
    weight = head.weight.detach().to("cpu", torch.float64)
    bias = head.bias.detach().to("cpu", torch.float64) if head.bias is not None else weight.new_zeros(weight.shape[0])
    return torch.cat([weight, bias[:, None]], dim=1)


# ------------------------------------------------------------------------------- recording
class PrototypeRecording:
    """What Naive PS needs about a trained classifier, and the deletions served so far.

    Args:
        weight0: ``(C, E+1)`` head at initialisation, ``[W0 | b0]``.
        weight: ``(C, E+1)`` head the recording describes (the trained head, then the
            unlearned head after every Naive PS request).
        gram: ``(E+1, E+1)`` Gram matrix of the bias-augmented embeddings of the samples
            still in the training set.
        has_bias: whether the head has a bias.
        head_name: dotted path of the head in the recorded module (informative).
        removed: sorted dataset indices removed so far.
        recorded: sorted dataset indices (or positions, for batches without indices) of the
            samples ``gram`` was accumulated over; ``None`` for recordings that did not keep them.

    Raises:
        ValueError: for inconsistent shapes.
    """

    def __init__(
        self,
        weight0: Tensor,
        weight: Tensor,
        gram: Tensor,
        has_bias: bool = True,
        head_name: str = "",
        removed: Tensor | None = None,
        recorded: Tensor | None = None,
    ) -> None:
        classes, dim = weight0.shape
        if weight.shape != (classes, dim) or gram.shape != (dim, dim):
            raise ValueError(
                f"Inconsistent recording: weight0 {tuple(weight0.shape)}, weight {tuple(weight.shape)},"
                f" gram {tuple(gram.shape)}; expected (C, E+1), (C, E+1), (E+1, E+1)."
            )
        self.weight0 = weight0.to(torch.float64)
        self.weight = weight.to(torch.float64)
        self.gram = gram.to(torch.float64)
        self.has_bias = bool(has_bias)
        self.head_name = head_name
        self.removed = removed.long().sort().values if removed is not None else torch.empty(0, dtype=torch.long)
        self.recorded = recorded.long().sort().values if recorded is not None else None

    @property
    def embedding_dim(self) -> int:
        return self.weight0.shape[1] - 1

    @property
    def num_classes(self) -> int:
        return self.weight0.shape[0]

    @property
    def num_samples(self) -> int:
        """Samples still counted in G (its constant-column entry is exactly this count)."""
        return int(round(self.gram[-1, -1].item()))

    def copy(self) -> PrototypeRecording:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORDING_VERSION,
            "weight0": self.weight0,
            "weight": self.weight,
            "gram": self.gram,
            "has_bias": self.has_bias,
            "head_name": self.head_name,
            "removed": self.removed,
            "recorded": self.recorded,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PrototypeRecording:
        missing = {"weight0", "weight", "gram"} - set(state)
        if missing:
            raise ValueError(f"Not a PrototypeRecorder state: missing {sorted(missing)}.")
        return cls(state["weight0"], state["weight"], state["gram"], state.get("has_bias", True),
                   state.get("head_name", ""), state.get("removed"), state.get("recorded"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the recording to ``path`` (atomically)."""
        return save_atomic(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PrototypeRecording:
        """Read a file written by :meth:`save`, or a Lightning checkpoint of a fit with a :class:`PrototypeRecorder`.

        The file is read with :func:`~lightning_unlearn.serialization.load_trusted`: nothing in it is executed.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            IsADirectoryError: if ``path`` is a directory.
            ValueError: if the file is not a trusted PyTorch checkpoint or holds no recording.
        """
        path = Path(path)
        payload = load_trusted(path, "recording")
        if isinstance(payload, dict) and isinstance(payload.get("callbacks"), dict):
            states = [v for k, v in payload["callbacks"].items()
                      if str(k).startswith("PrototypeRecorder") and isinstance(v, dict)]
            if not states or states[0].get("gram") is None:
                raise ValueError(
                    f"Checkpoint {str(path)!r} has no complete PrototypeRecorder state: attach `PrototypeRecorder()`"
                    " to the Trainer.fit that trains the model from initialisation."
                )
            payload = states[0]
        if not isinstance(payload, dict):
            raise ValueError(
                f"`recording` {str(path)!r} holds a {type(payload).__name__}, expected a PrototypeRecording."
            )
        return cls.from_dict(payload)

    def __repr__(self) -> str:
        return (f"PrototypeRecording(num_classes={self.num_classes}, embedding_dim={self.embedding_dim},"
                f" num_samples={self.num_samples}, removed={self.removed.numel()})")
