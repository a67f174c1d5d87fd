"""Record what Naive Prototype Surgery needs during the original training: W0 and the Gram matrix.

Naive PS (Prototype Surgery, Liu et al., CCS 2025) unlearns the head in closed form from the head at
initialisation ``W0`` and the Gram matrix ``G = X̃ᵀX̃`` of the bias-augmented training
embeddings (the Gram-matrix form of the paper's closed form: O(E²) memory
whatever the number of training samples). Neither can be recovered after training, so
:class:`PrototypeRecorder` records them while the user's own ``Trainer.fit`` runs.

The passes over data it runs are those of :mod:`lightning_unlearn.passes`; the record itself and the
Gram pass live in :mod:`lightning_unlearn.prototypes` (re-exported here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_unlearn.models.anatomy import Anatomy
from lightning_unlearn.models.classifier import split_batch
from lightning_unlearn.passes import gather_rows
from lightning_unlearn.prototypes import RECORDING_VERSION, PrototypeRecording, augment, gram_pass, head_matrix


# -------------------------------------------------------------------------------- callback
class PrototypeRecorder(Callback):
    """Record W0 and the Gram matrix of the training embeddings during the user's ``Trainer.fit``.

    Attach it to the unchanged fit that trains the classifier from initialisation:

    * at fit start it stores the head ``[W0 | b0]`` (the head found by
      :class:`~lightning_unlearn.models.Anatomy` in the LightningModule);
    * on the first training batch, before the first optimisation step, it reads the head from
      the forward pass (:meth:`~lightning_unlearn.models.Anatomy.inspect`) and fails at once if
      no usable head runs, rather than after the whole training. Operations after the head (e.g.
      a ReLU) are fine: the head's updates lie in the span of the training embeddings whatever
      follows it, which is all Naive PS assumes;
    * after the last training batch (when ``max_epochs`` or ``max_steps`` ends the fit, so the
      checkpoints Lightning writes at the end of that epoch hold the recording), or else at fit
      end, it runs ONE no-grad, eval-mode pass over the training data and accumulates
      ``G = Σ x̃ᵀx̃`` over the bias-augmented embeddings in float64 (memory O(E²), never
      O(N·E)), plus the trained head the recording describes and the recorded indices;
    * at fit end it writes the recording to ``path`` when one is given (the way to get it from
      a LightningCLI script: ``--trainer.callbacks+=lightning_unlearn.PrototypeRecorder
      --trainer.callbacks.path=recording.pt``).

    The training data is the dataset of ``trainer.train_dataloader`` (or the data module's
    ``train`` split). Under DDP every process embeds the samples ``rank::world_size`` of
    that dataset in order (no DistributedSampler, hence no padded duplicates) and the
    per-process Gram matrices are summed, so the result equals the single-process one.
    The state is part of the checkpoint (``state_dict``) and can be exported with
    :meth:`export`; pass the recorder, its :attr:`recording`, the exported file or the
    checkpoint path to :class:`~lightning_unlearn.methods.NaivePS` as ``recording``.

    Paper: Liu et al., "Prototype Surgery: Tailoring Neural Prototypes via Soft Labels for
    Efficient Machine Unlearning", CCS 2025 (Naive PS, Eq. 9-10).

    Deviations:
        * The paper pre-saves the N×E embedding matrix; we keep only the E×E Gram matrix
          (same solution, memory independent of N).
        * The bias is recorded as an extra prototype column (constant-1 embedding entry).

    Args:
        head: dotted path of the head inside the LightningModule (e.g. ``"model.fc"``);
            default: found automatically.
        num_classes: number of classes (helps finding the head).
        path: file the recording is written to at fit end (atomically, by the global-zero process).

    Raises:
        ValueError: for a ``num_classes`` < 2.
        HeadNotFoundError: at fit start, when the LightningModule has no detectable head.
        MisconfigurationException: at fit end, when no map-style training data is available.

    Example:
        >>> from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier
        >>> dm = UnlearningDataModule("digits", forget=ClassForget(0))
        >>> recorder = PrototypeRecorder()
        >>> model = train_classifier(dm, max_epochs=1, callbacks=[recorder])
        >>> recorder.recording.num_samples == len(dm.indices["train"])
        True
    """

    def __init__(self, head: str | None = None, num_classes: int | None = None, path: str | os.PathLike | None = None) -> None:
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2, got {num_classes}.")
        self.head = head
        self.num_classes = num_classes
        self.path = path
        self._checked = False
        self._weight0: Tensor | None = None
        self._has_bias = True
        self._head_name = ""
        self._recording: PrototypeRecording | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(head=self.head, num_classes=self.num_classes)

    @property
    def recording(self) -> PrototypeRecording:
        """The complete recording (W0, trained head, G).

        Raises:
            RuntimeError: before the recorded fit has ended.
        """
        if self._recording is None:
            raise RuntimeError(
                "PrototypeRecorder has no complete recording yet: it records W0 at the start and the Gram matrix"
                " at the end of the Trainer.fit it is attached to."
            )
        return self._recording

    def _anatomy(self, pl_module: LightningModule) -> Anatomy:
        return Anatomy(pl_module, self.num_classes, self.head)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        anatomy = self._anatomy(pl_module)
        if self._weight0 is not None and trainer.ckpt_path is not None:
            if self._weight0.shape[1] - 1 != anatomy.embedding_dim:
                raise ValueError(
                    f"The restored PrototypeRecorder state has embedding size {self._weight0.shape[1] - 1}, but the"
                    f" model's head {anatomy.head_name!r} has in_features={anatomy.embedding_dim}."
                )
            return  # resumed: W0 came from the checkpoint
        if trainer.ckpt_path is not None:
            rank_zero_warn(
                "PrototypeRecorder: resuming from a checkpoint without recorder state; the head at resume time is"
                " recorded as W0, which is not the initialisation Naive PS assumes."
            )
        self._record_initial_head(anatomy)
        self._recording = None
        self._checked = False

    def _record_initial_head(self, anatomy: Anatomy) -> None:
        self._weight0 = head_matrix(anatomy.head)
        self._has_bias = anatomy.head.bias is not None
        self._head_name = anatomy.head_name

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._checked or self._weight0 is None:
            return
        try:
            x = split_batch(batch)[0]
        except (TypeError, ValueError, IndexError, KeyError):
            return  # a batch of another shape: the head is checked at the end of the fit instead
        anatomy = self._anatomy(pl_module)
        anatomy.inspect(x)  # raises now, not after the whole training, when no usable head runs
        if anatomy.head_name != self._head_name:
            if trainer.ckpt_path is not None:
                raise ValueError(
                    f"The restored PrototypeRecorder state recorded the head {self._head_name!r}, but the forward pass"
                    f" gives the class scores from {anatomy.head_name!r}."
                )
            self._record_initial_head(anatomy)  # no optimisation step has run yet: this is still W0
        self._checked = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        epochs, steps = trainer.max_epochs, trainer.max_steps
        last_epoch = epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs and trainer.is_last_batch
        last_step = steps is not None and steps >= 0 and trainer.global_step >= steps
        loader = trainer.train_dataloader
        shared_workers = isinstance(loader, DataLoader) and loader.persistent_workers  # a second pass would reset them
        if self._weight0 is not None and (last_epoch or last_step) and not shared_workers:
            self._record(trainer, pl_module)  # before this epoch's checkpoints: they hold the recording

    def _record(self, trainer: Trainer, pl_module: LightningModule) -> None:
        anatomy = self._anatomy(pl_module)
        gram, indices = gram_pass(anatomy, self._training_loader(trainer), trainer)
        indices = gather_rows(indices, trainer).cpu()
        self._recording = PrototypeRecording(
            self._weight0, head_matrix(anatomy.head), gram, self._has_bias, self._head_name, recorded=indices
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._weight0 is None:
            return
        if self._recording is None or not torch.equal(self._recording.weight, head_matrix(self._anatomy(pl_module).head)):
            self._record(trainer, pl_module)  # the fit ended otherwise (early stopping, an interrupt, ...)
        if self.path is not None and trainer.is_global_zero:
            self.export(self.path)

    @staticmethod
    def _training_loader(trainer: Trainer) -> DataLoader:
        loader = trainer.train_dataloader
        if isinstance(loader, DataLoader) and hasattr(loader.dataset, "__len__"):
            return loader
        datamodule = trainer.datamodule
        if datamodule is not None and callable(getattr(datamodule, "dataloader", None)):
            return datamodule.dataloader("train")
        raise MisconfigurationException(
            "PrototypeRecorder needs one map-style training DataLoader (or an UnlearningDataModule) to compute the"
            f" Gram matrix, got {type(loader).__name__}."
        )

    def export(self, path: str | os.PathLike) -> Path:
        """Write the recording to a file (load it with :meth:`PrototypeRecording.load`)."""
        return self.recording.save(path)

    def state_dict(self) -> dict[str, Any]:
        if self._recording is not None:
            return self._recording.to_dict()
        return {"weight0": self._weight0, "has_bias": self._has_bias, "head_name": self._head_name, "gram": None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self._weight0 = state_dict.get("weight0")
        self._has_bias = bool(state_dict.get("has_bias", True))
        self._head_name = state_dict.get("head_name", "")
        self._recording = PrototypeRecording.from_dict(state_dict) if state_dict.get("gram") is not None else None


__all__ = ["RECORDING_VERSION", "PrototypeRecorder", "PrototypeRecording", "augment", "gram_pass", "head_matrix"]
