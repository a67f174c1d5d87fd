"""UnlearningEvaluator: score the model being unlearned after every epoch, log it, keep the best epoch."""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

Criterion = Literal["average_gap", "forget_target"]


class UnlearningEvaluator(Callback):
    """Evaluate forget/retain/test accuracy (and optionally MIA and the average gap) after every epoch.

    At the end of each validation epoch of the unlearning Trainer, the model is scored with
    :func:`lightning_unlearn.evaluation.evaluate` (one forward pass per split) and the values are
    kept in :attr:`history`. They are logged with ``pl_module.log`` in the validation phase, so
    they land in the same row and on the same step as the method's own validation metrics, reach
    every logger and ``trainer.callback_metrics`` (``ModelCheckpoint``/``EarlyStopping`` can
    monitor them), and each quantity is logged once: the accuracy on a split is
    ``val/<split>_acc``, the key an :class:`~lightning_unlearn.methods.UnlearningMethod` logs for
    the splits it validates (those are not logged a second time); the callback adds the splits the
    method does not validate, ``val/mia_efficacy`` and ``val/average_gap``. With a ``criterion``
    the callback also keeps the best epoch's weights:

    * ``"average_gap"``: the smallest average gap to ``reference`` (needs ``mia=True``);
    * ``"forget_target"``: the first epoch whose forget accuracy is at most ``forget_target``.

    With ``restore_best`` the best weights are loaded back into the model when fitting ends.
    The evaluation runs inside the validation phase, so it is excluded from the method's runtime.

    Args:
        reference: the retrained model, for gaps and the average gap (moved to the model's device).
        mia: also compute MIA-efficacy.
        criterion: how to pick the best epoch (``None``: keep no weights).
        forget_target: forget accuracy of the ``"forget_target"`` criterion.
        restore_best: load the best weights into the model at the end of fitting.
        every_n_epochs: evaluate every n-th epoch.

    Raises:
        ValueError: for a ``criterion`` other than the allowed ones, ``"average_gap"`` without a
            reference or without MIA, ``forget_target`` outside [0, 1] or ``every_n_epochs`` < 1.
        MisconfigurationException: in ``setup``, if the Trainer runs no validation.

    Example:
        >>> from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
        >>> dm = UnlearningDataModule("digits", forget=ClassForget(0))
        >>> original = train_classifier(dm, max_epochs=1)
        >>> evaluator = UnlearningEvaluator(criterion="forget_target", forget_target=0.1, restore_best=True)
        >>> unlearned = unlearn(original, dm, "GradientAscent", callbacks=[evaluator], max_epochs=3)
        >>> len(evaluator.history)
        3
    """

    def __init__(
        self,
        reference: nn.Module | None = None,
        mia: bool = False,
        criterion: Criterion | None = None,
        forget_target: float = 0.0,
        restore_best: bool = False,
        every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        if criterion not in (None, "average_gap", "forget_target"):
            raise ValueError(f"`criterion` must be None, 'average_gap' or 'forget_target', got {criterion!r}.")
        if criterion == "average_gap" and (reference is None or not mia):
            raise ValueError("`criterion`='average_gap' needs a `reference` model and `mia`=True (the gap includes MIA-efficacy).")
        if reference is not None and not isinstance(reference, nn.Module):
            raise TypeError(f"`reference` must be an nn.Module, got {type(reference).__name__}.")
        if not 0.0 <= forget_target <= 1.0:
            raise ValueError(f"`forget_target` must be in [0, 1], got {forget_target}.")
        if every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be >= 1, got {every_n_epochs}.")
        self.reference = reference
        self.mia, self.criterion, self.forget_target = mia, criterion, float(forget_target)
        self.restore_best, self.every_n_epochs = restore_best, every_n_epochs
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.best_score: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(criterion=self.criterion, forget_target=self.forget_target)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not trainer.limit_val_batches:
            raise MisconfigurationException(
                f"UnlearningEvaluator evaluates during the validation phase, but the Trainer has"
                f" limit_val_batches={trainer.limit_val_batches!r}; set it to 1.0."
            )

    @staticmethod
    def _model(pl_module: pl.LightningModule) -> nn.Module:
        return getattr(pl_module, "unlearned_model", pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        from lightning_unlearn.evaluation import evaluate

        model = self._model(pl_module)
        reference = self.reference
        if reference is not None:
            reference = reference.to(next(model.parameters()).device)
        report = evaluate(model, trainer.datamodule, reference=reference, mia=self.mia, loss_mia=False)
        values = {f"{s}_acc": a for s, a in report.unlearned.accuracy.items()}
        if report.unlearned.mia_efficacy is not None:
            values["mia_efficacy"] = report.unlearned.mia_efficacy
        if report.average_gap is not None:
            values["average_gap"] = report.average_gap
        self.history.append({"epoch": float(trainer.current_epoch), **values})
        # The method already logged val/<split>_acc for the splits it validates: the same quantity, not logged twice.
        validated = {f"{s}_acc" for s in getattr(pl_module, "validated_splits", ())}
        for name, value in values.items():
            if name not in validated:
                # Every process computed the same value over the whole split; sync_dist is Lightning's epoch-level rule.
                pl_module.log(f"val/{name}", value, on_epoch=True, sync_dist=True, add_dataloader_idx=False)
        self._update_best(trainer.current_epoch, values, model)

    def _update_best(self, epoch: int, values: dict[str, float], model: nn.Module) -> None:
        if self.criterion is None:
            return
        if self.criterion == "average_gap":
            score = values["average_gap"]
            better = self.best_score is None or score < self.best_score
        else:
            score = values["forget_acc"]
            better = self.best_epoch is None and score <= self.forget_target
        if better and math.isfinite(score):
            self.best_epoch, self.best_score = epoch, score
            with torch.inference_mode(False):  # validation runs in inference mode; keep ordinary tensors
                self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            rank_zero_info(f"UnlearningEvaluator: new best epoch {epoch} ({self.criterion} = {score:.4f}).")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore_best and self.best_state is not None:
            self._model(pl_module).load_state_dict(self.best_state)
            rank_zero_info(f"UnlearningEvaluator: restored the weights of epoch {self.best_epoch}.")

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [dict(h) for h in self.history],
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "best_state": copy.deepcopy(self.best_state),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict["history"]]
        self.best_epoch = state_dict["best_epoch"]
        self.best_score = state_dict["best_score"]
        self.best_state = copy.deepcopy(state_dict["best_state"])
