"""RelearningProbe: after unlearning, run the relearning test and record the curve and the relearn time."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_unlearn.relearning import RelearningResult, relearn


class RelearningProbe(Callback):
    """Run the relearning test (PRU, Zhang et al., ACML 2024, §5.3) when unlearning ends.

    A copy of the unlearned model is fine-tuned on D_new, without the forgotten classes when the
    request forgets whole classes (:func:`lightning_unlearn.relearning.relearn`, SGD); the forget
    accuracy (on D_tf for class-wise forgetting, else D_f) is recorded before relearning and after
    every epoch, and the relearn time is the first epoch at which it reaches ``threshold``. The
    unlearned model itself is not changed. Every process runs the same deterministic probe (no
    collective call), so the result is identical on all of them.

    The curve is kept in :attr:`result` and logged to the Trainer's loggers, one row per relearning
    epoch ``e``: ``relearn/forget_acc`` with ``relearn/epoch`` = ``e``, the curve's own x-axis (the
    ``relearn/epoch`` column of a CSV log, or wandb's
    ``define_metric("relearn/*", step_metric="relearn/epoch")``). The rows take the logger steps
    that follow the last step unlearning logged (the probe runs after fitting): steps that went
    back would interleave the curve with the training rows, or be refused by loggers whose steps
    only increase (wandb).

    Args:
        epochs: relearning epochs (default 10).
        lr: SGD learning rate (default 1e-3).
        momentum: SGD momentum (default 0.9, as in the PRU paper's relearning test).
        batch_size: relearning batch size.
        threshold: forget accuracy that counts as recovered (``None``: no relearn time).
        seed: seed of the relearning shuffles.

    Raises:
        ValueError: for ``epochs`` < 1, ``lr`` <= 0 or ``threshold`` outside [0, 1].
        MisconfigurationException: in ``setup``, if the data module has no D_new.

    Example:
        >>> from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
        >>> dm = UnlearningDataModule("digits", forget=ClassForget(0), new_fraction=0.1)
        >>> original = train_classifier(dm, max_epochs=1)
        >>> probe = RelearningProbe(epochs=2, threshold=0.5)
        >>> unlearned = unlearn(original, dm, "GradientAscent", callbacks=[probe], max_epochs=1)
        >>> len(probe.result.forget_accuracy)
        3
    """

    def __init__(
        self,
        epochs: int = 10,
        lr: float = 1e-3,
        momentum: float = 0.9,
        batch_size: int = 64,
        threshold: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if epochs < 1:
            raise ValueError(f"`epochs` must be >= 1, got {epochs}.")
        if lr <= 0:
            raise ValueError(f"`lr` must be > 0, got {lr}.")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must be in [0, 1] or None, got {threshold}.")
        self.epochs, self.lr, self.momentum, self.batch_size = epochs, lr, momentum, batch_size
        self.threshold, self.seed = threshold, seed
        self.result: RelearningResult | None = None
        self.probe_time_s: float | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if stage == "fit" and (datamodule is None or not datamodule.has_split("new")):
            raise MisconfigurationException(
                "RelearningProbe needs an UnlearningDataModule with a non-empty D_new: build it with `new_fraction` > 0."
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = getattr(pl_module, "unlearned_model", pl_module)
        start = time.perf_counter()
        self.result = relearn(model, trainer.datamodule, self.epochs, self.lr, self.momentum, self.batch_size, self.threshold,
                              self.seed, trainer=trainer)  # under the run's precision, on its device
        self.probe_time_s = time.perf_counter() - start
        # Lightning logs at the count of batches that stepped (global_step counts optimiser steps): past both.
        first_step = max(trainer.global_step, trainer.fit_loop.epoch_loop._batches_that_stepped) + 1
        for logger in trainer.loggers:
            for epoch, acc in enumerate(self.result.forget_accuracy):
                logger.log_metrics({"relearn/forget_acc": acc, "relearn/epoch": epoch}, step=first_step + epoch)
            logger.save()
        rank_zero_info(
            f"RelearningProbe: forget accuracy {['%.3f' % a for a in self.result.forget_accuracy]};"
            f" relearn epochs: {self.result.relearn_epochs}."
        )

    def state_dict(self) -> dict[str, Any]:
        return {"result": self.result.to_dict() if self.result else None, "probe_time_s": self.probe_time_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.result = RelearningResult(**state_dict["result"]) if state_dict["result"] else None
        self.probe_time_s = state_dict["probe_time_s"]
