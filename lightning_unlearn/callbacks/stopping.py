"""Stopping rules for unlearning (after SULI, Lyu et al., IJCAI 2025): stop once the model has forgotten enough.

Two rules, both usable with every method:

* class-wise -- :class:`ForgetAccuracyStop`: stop when the forget accuracy is at most a target
  (default 0: the forgotten classes are never predicted any more);
* instance-wise -- :class:`ReferenceAccuracyStop`: stop when the forget accuracy is at most the
  model's own accuracy on the held-out reference split D_ref (forgotten samples are then treated
  like samples the model never saw).

Both read the accuracies :class:`~lightning_unlearn.methods.base.UnlearningMethod` logs after every
validation run (``val/forget_acc``, ``val/ref_acc``), make sure the splits they need are evaluated,
agree on the decision across processes (``trainer.strategy.reduce_boolean_decision``: one process
deciding to stop stops all), and keep their state in the checkpoint.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException


class UnlearningStopReason(Enum):
    """Why a stopping rule stopped the run."""

    NOT_STOPPED = 0
    TARGET_REACHED = 1
    NON_FINITE_METRIC = 2


class _AccuracyStop(Callback):
    """Shared machinery of the stopping rules: set-up checks, the reduced decision and the state."""

    required_splits: tuple[str, ...] = ("forget",)

    def __init__(self, verbose: bool = True, check_finite: bool = True) -> None:
        super().__init__()
        if not isinstance(verbose, bool):
            raise TypeError(f"`verbose` must be a bool, got {type(verbose).__name__}.")
        if not isinstance(check_finite, bool):
            raise TypeError(f"`check_finite` must be a bool, got {type(check_finite).__name__}.")
        self.verbose = verbose
        self.check_finite = check_finite
        self.stopped_epoch: int | None = None
        self.stopping_reason = UnlearningStopReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def ensure_val_splits(pl_module: pl.LightningModule, splits: tuple[str, ...]) -> list[str]:
        """Add ``splits`` to an unlearning method's evaluated splits; return the ones added.

        Raises:
            MisconfigurationException: if ``pl_module`` logs no per-split accuracies (it is not an
                :class:`~lightning_unlearn.methods.base.UnlearningMethod`).
        """
        if not callable(getattr(pl_module, "add_val_splits", None)):
            raise MisconfigurationException(
                f"Stopping rules read the per-split accuracies an UnlearningMethod logs (`val/<split>_acc`);"
                f" {type(pl_module).__name__} is not an UnlearningMethod."
            )
        return pl_module.add_val_splits(*splits)  # type: ignore[operator]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.limit_val_batches:
            raise MisconfigurationException(
                f"{type(self).__name__} needs a validation run after every epoch, but the Trainer has"
                f" limit_val_batches={trainer.limit_val_batches!r}; set it to 1.0."
            )
        datamodule = getattr(trainer, "datamodule", None)
        for split in self.required_splits:
            if datamodule is not None and hasattr(datamodule, "has_split") and not datamodule.has_split(split):
                hint = " (build the data module with `ref_fraction` > 0)" if split == "ref" else ""
                raise MisconfigurationException(
                    f"{type(self).__name__} needs the {split!r} split, but the data module's {split!r} split is empty{hint}."
                )
        added = self.ensure_val_splits(pl_module, self.required_splits)
        if added:
            rank_zero_info(f"{type(self).__name__}: evaluating the split(s) {added} after every epoch.")

    # ---------------------------------------------------------------- decision
    def _current(self, trainer: pl.Trainer) -> dict[str, float] | None:
        logs = trainer.callback_metrics
        keys = [f"val/{s}_acc" for s in self.required_splits]
        if any(k not in logs for k in keys):
            return None
        return {s: float(logs[k]) for s, k in zip(self.required_splits, keys)}

    def _decide(self, values: dict[str, float]) -> tuple[bool, str]:
        raise NotImplementedError

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        values = self._current(trainer)
        if values is None:
            raise RuntimeError(
                f"{type(self).__name__}: the validation run logged none of"
                f" {[f'val/{s}_acc' for s in self.required_splits]}; available: {sorted(trainer.callback_metrics)}."
            )
        self.history.append({"epoch": float(trainer.current_epoch), **values})
        if self.check_finite and not all(math.isfinite(v) for v in values.values()):
            should_stop, reason = True, f"{type(self).__name__}: non-finite accuracy {values}; stopping."
            kind = UnlearningStopReason.NON_FINITE_METRIC
        else:
            should_stop, reason = self._decide(values)
            kind = UnlearningStopReason.TARGET_REACHED
        # Stop every process if any process decides to stop.
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        if should_stop and self.stopped_epoch is None:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason = kind
            self.stopping_reason_message = reason
            if self.verbose:
                rank_zero_info(reason)
        trainer.should_stop = trainer.should_stop or should_stop

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "stopped_epoch": self.stopped_epoch,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.stopping_reason = UnlearningStopReason(state_dict["stopping_reason"])
        self.stopping_reason_message = state_dict["stopping_reason_message"]
        self.history = [dict(h) for h in state_dict["history"]]


class ForgetAccuracyStop(_AccuracyStop):
    """Class-wise stopping rule: stop once the forget accuracy is at most ``target``.

    From SULI (Lyu et al., IJCAI 2025, §4, class-wise unlearning): after every validation
    run, the accuracy on D_f logged by the unlearning method (``val/forget_acc``) is compared with
    ``target``; the Trainer stops when ``val/forget_acc <= target``. The decision is reduced across
    processes (any process stopping stops all) and the rule's state is saved in checkpoints.
    The forget split is added to the method's ``val_splits`` if missing.

    Args:
        target: forget accuracy at which forgetting counts as done, in [0, 1] (default 0).
        verbose: log a message when stopping.
        check_finite: stop when the accuracy is not finite.

    Attributes:
        stopped_epoch: the epoch the rule stopped at (``None`` if it did not stop).
        stopping_reason: an :class:`UnlearningStopReason`.
        history: the accuracies seen at every check.

    Raises:
        ValueError: if ``target`` is outside [0, 1].
        MisconfigurationException: in ``setup``, if the Trainer runs no validation or the module is
            not an unlearning method.

    Example:
        >>> from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
        >>> dm = UnlearningDataModule("digits", forget=ClassForget(0))
        >>> original = train_classifier(dm, max_epochs=1)
        >>> stop = ForgetAccuracyStop(target=0.05)
        >>> unlearned = unlearn(original, dm, "GradientAscent", callbacks=[stop], max_epochs=20)
    """

    def __init__(self, target: float = 0.0, verbose: bool = True, check_finite: bool = True) -> None:
        if isinstance(target, bool) or not isinstance(target, (int, float)):
            raise TypeError(f"`target` must be a float in [0, 1], got {type(target).__name__}.")
        if not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"`target` must be in [0, 1], got {target}.")
        super().__init__(verbose, check_finite)
        self.target = float(target)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(target=self.target)

    def _decide(self, values: dict[str, float]) -> tuple[bool, str]:
        acc = values["forget"]
        stop = acc <= self.target
        return stop, f"ForgetAccuracyStop: val/forget_acc = {acc:.4f} <= target {self.target:.4f}; stopping."


class ReferenceAccuracyStop(_AccuracyStop):
    """Instance-wise stopping rule: stop once the forget accuracy is at most the accuracy on D_ref.

    From SULI (Lyu et al., IJCAI 2025, §4, instance-wise unlearning): D_ref is a held-out
    split the model never trained on; when the model is no more accurate on D_f than on D_ref
    (``val/forget_acc <= val/ref_acc + margin``), the forgotten samples look unseen and
    unlearning stops. Both splits are added to the method's ``val_splits`` if missing. The
    decision is reduced across processes and the state is saved in checkpoints.

    ``reference="initial"`` (opt-in, not the default rule) compares with the accuracy on D_ref of the
    model *before* unlearning, measured once when training starts and kept in the checkpoint (a
    resumed run does not re-measure it). Use it for methods that train on D_f only: their D_ref
    accuracy falls together with the forget accuracy, so on a small model the default rule may fire
    only after both have collapsed.

    Args:
        margin: tolerance added to the reference accuracy (default 0, the default rule).
        reference: ``"current"`` (default: the model's accuracy on D_ref at every check) or
            ``"initial"`` (the accuracy on D_ref when training starts).
        verbose: log a message when stopping.
        check_finite: stop when an accuracy is not finite.

    Raises:
        ValueError: if ``margin`` is outside [-1, 1] or ``reference`` is not one of the two names.
        MisconfigurationException: in ``setup``, if the data module has no D_ref
            (``ref_fraction`` = 0), the Trainer runs no validation or the module is not an
            unlearning method.

    Example:
        >>> from lightning_unlearn import RandomForget, UnlearningDataModule, train_classifier, unlearn
        >>> dm = UnlearningDataModule("digits", forget=RandomForget(fraction=0.1), ref_fraction=0.1)
        >>> original = train_classifier(dm, max_epochs=1)
        >>> unlearned = unlearn(original, dm, "GradientAscent", callbacks=[ReferenceAccuracyStop()], max_epochs=20)
    """

    required_splits = ("forget", "ref")

    def __init__(
        self, margin: float = 0.0, reference: Literal["current", "initial"] = "current", verbose: bool = True, check_finite: bool = True
    ) -> None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise TypeError(f"`margin` must be a float in [-1, 1], got {type(margin).__name__}.")
        if not -1.0 <= float(margin) <= 1.0:
            raise ValueError(f"`margin` must be in [-1, 1], got {margin}.")
        if reference not in ("current", "initial"):
            raise ValueError(f"`reference` must be 'current' (the default rule) or 'initial', got {reference!r}.")
        super().__init__(verbose, check_finite)
        self.margin = float(margin)
        self.reference = reference
        self.initial_reference: float | None = None

    @property
    def state_key(self) -> str:
        if self.reference == "current":
            return self._generate_state_key(margin=self.margin)
        return self._generate_state_key(margin=self.margin, reference=self.reference)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.reference != "initial" or self.initial_reference is not None:
            return  # a resumed run keeps the accuracy measured before unlearning began
        from lightning_unlearn.outputs import predict

        # Every process evaluates the whole D_ref (no sampler), so all hold the same value.
        loader = trainer.datamodule.dataloader("ref")  # type: ignore[union-attr]
        self.initial_reference = predict(pl_module, loader).accuracy
        if self.verbose:
            rank_zero_info(f"ReferenceAccuracyStop: accuracy on D_ref before unlearning = {self.initial_reference:.4f}.")

    def _decide(self, values: dict[str, float]) -> tuple[bool, str]:
        acc = values["forget"]
        if self.reference == "initial":
            ref, name = float(self.initial_reference), "the initial val/ref_acc"  # type: ignore[arg-type]
        else:
            ref, name = values["ref"], "val/ref_acc"
        stop = acc <= ref + self.margin
        return stop, f"ReferenceAccuracyStop: val/forget_acc = {acc:.4f} <= {name} = {ref:.4f} (+ margin {self.margin:.4f}); stopping."

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "initial_reference": self.initial_reference}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.initial_reference = state_dict.get("initial_reference")
