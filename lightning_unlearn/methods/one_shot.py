"""The family of methods that change only the head in one call: Naive Prototype Surgery and Prototype Surgery."""

from __future__ import annotations

import time
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from lightning_unlearn.data.datamodule import TrainingData
from lightning_unlearn.methods.base import UnlearningMethod


class OneShotHeadMethod(UnlearningMethod):
    """Base of the methods that change only the head, in one call (no Trainer steps): NaivePS and PS.

    ``prepare_unlearning`` serves the request with :meth:`surgery` over the data module's forget
    set (batches of the subclass's ``batch_size`` hyper-parameter, default the data module's
    evaluation batch size) inside the timed region, then stops the Trainer before its first epoch;
    ``training_step`` never changes a weight even if the Trainer is forced to run epochs
    (``min_epochs``). :meth:`surgery` also serves a request without a Trainer.
    """

    iterative = False
    trains_in_epochs = False

    @property
    def _fit_trainer(self) -> Any:
        """The Trainer while this method is being fitted, else ``None`` (direct calls)."""
        return self._trainer if self._t_start is not None else None

    def surgery(self, forget_loader: DataLoader) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_unlearning(self) -> None:
        self.surgery(self.datamodule.dataloader("forget", batch_size=self.hparams.batch_size))
        self.trainer.should_stop = True

    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> Any:
        # Only so that Lightning has an optimiser to set up: training_step never steps it.
        return self.make_optimizer(self.trainable_parameters())

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.anatomy.head_parameters()

    @property
    def training_data(self) -> TrainingData:
        # Lightning builds a training loader although the work ends before the first epoch: never trained on.
        return TrainingData(("forget",), shuffle=False, batch_size=self.hparams.batch_size)

    def _timed(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` and add its duration to ``runtime_s`` when called outside a Trainer."""
        if self._fit_trainer is not None:
            return fn(*args)
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.runtime_s += time.perf_counter() - start
