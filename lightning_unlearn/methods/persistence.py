"""How an unlearning method is saved and loaded: the unlearned classifier as a Lightning checkpoint, the
Trainer's checkpoints of a run (its network record, its runtime and the global random state, for an exact resume),
and ``load_from_checkpoint`` without ``model=`` where the checkpoint records the network."""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from torch import nn

from lightning_unlearn.atomic import save_atomic
from lightning_unlearn.checkpoints import _architecture_in, load_model_weights, unlearned_checkpoint
from lightning_unlearn.data.resumable import random_state, set_random_state
from lightning_unlearn.models.classifier import Classifier
from lightning_unlearn.serialization import load_trusted, plain

if TYPE_CHECKING:
    from typing_extensions import Self

    from lightning_unlearn.data.datamodule import UnlearningDataModule

FROM_STATE_DICT: ContextVar[bool] = ContextVar("lightning_unlearn_from_state_dict", default=False)
"""True while load_from_checkpoint builds a method: its weights then come from the checkpoint's state dict."""


class MethodCheckpoints:
    """The saving and loading half of :class:`~lightning_unlearn.methods.base.UnlearningMethod` (a mixin placed
    before ``LightningModule``: its hooks and ``load_from_checkpoint`` are the ones Lightning calls)."""

    def save_unlearned(
        self, path: str | os.PathLike, *, datamodule: UnlearningDataModule | None = None, metrics: Any = None
    ) -> Path:
        """Save the unlearned classifier as a Lightning checkpoint (atomically: temporary file, then rename).

        The file loads with the original's own ``load_from_checkpoint`` when it was a LightningModule
        (``LitModel.load_from_checkpoint(path)``), with ``Classifier.load_from_checkpoint(path)`` when the
        network was built by name, and with :func:`lightning_unlearn.load_unlearned` in every case (see
        :mod:`lightning_unlearn.checkpoints`).

        Args:
            path: the file to write.
            datamodule: the data module that held the deletion request: when given, the deletion audit
                record ``audit.json`` is written beside the model (see :mod:`lightning_unlearn.audit_record`).
                The record and the model it hashes are written together, so a saved model never sits beside
                a record of another one; keep one folder per unlearned model.
            metrics: the evaluation to put in the audit record (a dict or an
                :class:`~lightning_unlearn.evaluation.UnlearningReport`), if any.

        Returns:
            The model file's path.
        """
        saved = save_atomic(
            unlearned_checkpoint(self.model, self.architecture, method=self.method_name, runtime_s=self.runtime_s,
                                 method_hparams=dict(self.hparams)),
            path,
        )
        if datamodule is not None:
            from lightning_unlearn.audit_record import AUDIT_FILE, write_audit_record

            write_audit_record(saved.parent / AUDIT_FILE, self, saved, datamodule, metrics=metrics)
        return saved

    def load_unlearned(self, path: str | os.PathLike) -> None:
        """Load weights written by :meth:`save_unlearned` into the wrapped classifier."""
        load_model_weights(self.model, path, argument="path")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["unlearning_runtime_s"] = self.runtime_s
        checkpoint["random_state"] = random_state()  # a model with dropout draws from it: a resumed run goes on with it
        if isinstance(checkpoint.get("hyper_parameters"), dict):  # e.g. a Path as `checkpoint`: keep it loadable
            checkpoint["hyper_parameters"] = plain(checkpoint["hyper_parameters"])
        if self.architecture is not None:  # the network, for load_from_checkpoint without `model`
            checkpoint["architecture"] = plain(self.architecture)
            if type(self.model) is Classifier:
                checkpoint["classifier_hyper_parameters"] = plain(dict(self.model.hparams))

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | os.PathLike | IO[bytes],
        map_location: Any = None,
        hparams_file: str | os.PathLike | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> Self:
        """A method from a checkpoint the Trainer wrote during unlearning (e.g. by ``ModelCheckpoint``).

        The network comes from ``model=`` when given; otherwise from the checkpoint, which records it
        when the original was a Classifier built by name (e.g. ``lightning-unlearn fit``). The weights
        come from the checkpoint's state dict: the original checkpoint named by the ``checkpoint``
        hyper-parameter is not read again (it may have moved). The file is read with ``weights_only``.

        Raises:
            ValueError: if no ``model`` is given and the checkpoint does not record its network, if the
                file is an unlearned model written by :meth:`save_unlearned` (it loads with the original's
                own class), or if it is not a trusted checkpoint.
        """
        is_path = isinstance(checkpoint_path, (str, os.PathLike))
        payload = load_trusted(checkpoint_path, "checkpoint_path") if is_path else None  # type: ignore[arg-type]
        if isinstance(payload, dict) and "method" in payload and "loops" not in payload:
            raise ValueError(
                f"{cls.__name__}.load_from_checkpoint: {str(checkpoint_path)!r} is an unlearned model written by"
                " save_unlearned / `unlearn`, not a Trainer checkpoint of a method: load it with the original's own"
                " load_from_checkpoint (e.g. Classifier.load_from_checkpoint) or lightning_unlearn.load_unlearned."
            )
        if kwargs.get("model") is None:
            if payload is None:
                raise ValueError(
                    f"{cls.__name__}.load_from_checkpoint needs `model=` when `checkpoint_path` is not a file path,"
                    f" got a {type(checkpoint_path).__name__}."
                )
            kwargs["model"] = cls._recorded_network(payload, checkpoint_path)
        token = FROM_STATE_DICT.set(True)  # the weights are the state dict's: `checkpoint` is not read again
        try:
            return super().load_from_checkpoint(
                checkpoint_path, map_location, hparams_file, strict, True if weights_only is None else weights_only,
                **kwargs,
            )
        finally:
            FROM_STATE_DICT.reset(token)

    @classmethod
    def _recorded_network(cls, payload: Any, path: Any) -> nn.Module:
        """The (untrained) network a method checkpoint records, or a one-line error saying to pass ``model=``."""
        from lightning_unlearn.models.networks import build_model

        arch = _architecture_in(payload.get("architecture")) if isinstance(payload, dict) else None
        if arch is None:
            raise ValueError(
                f"{cls.__name__}.load_from_checkpoint: {str(path)!r} does not record the network it unlearns (the"
                f" original was not a Classifier built by name); pass it: {cls.__name__}.load_from_checkpoint(path,"
                " model=net)."
            )
        classifier = payload.get("classifier_hyper_parameters")
        if isinstance(classifier, dict):
            return Classifier(**classifier)
        return build_model(arch["model"], arch["num_classes"], tuple(arch["input_shape"]))  # type: ignore[arg-type]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.runtime_s = float(checkpoint.get("unlearning_runtime_s", 0.0))
        if self.architecture is None:  # a network rebuilt from the record keeps its description
            self.architecture = _architecture_in(checkpoint.get("architecture"))
        self._resumed_random_state = checkpoint.get("random_state")

    def on_train_start(self) -> None:
        # The global random state of the checkpoint, restored where the training loop resumes (the work
        # done again before it, e.g. computing targets or measuring the request's splits, draws from it too).
        state, self._resumed_random_state = getattr(self, "_resumed_random_state", None), None
        if state is not None:
            set_random_state(state)
