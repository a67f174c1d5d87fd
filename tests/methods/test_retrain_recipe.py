"""Retrain with the user's own training code: a fresh initialisation trained by its training_step/configure_optimizers."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_unlearn import ClassForget, UnlearningDataModule, make_trainer
from lightning_unlearn.methods import Retrain
from lightning_unlearn.methods.retrain import reset_parameters


class OwnRecipe(L.LightningModule):
    """A user's module: SGD with momentum, label smoothing, its own logged key, (x, y) batches."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=0.1)
        self.log("my_loss", loss)
        return {"loss": loss}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def test_retrain_uses_the_models_own_training_code_and_equals_retraining_it_by_hand():
    dm = UnlearningDataModule("digits", forget=ClassForget(3), seed=0)
    dm.prepare_data()
    dm.setup()
    original = OwnRecipe()
    method = Retrain(original, max_epochs=2, seed=5)
    assert method.recipe == "model"
    trainer = make_trainer(2)
    trainer.fit(method, datamodule=dm)
    assert isinstance(trainer.optimizers[0], torch.optim.SGD) and "my_loss" in trainer.callback_metrics

    by_hand = _TripleBatches()  # the data module's loader gives (x, y, index)
    reset_parameters(by_hand, 5)
    L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(by_hand, dm.dataloader("retain", shuffle=True))
    for (name, mine), theirs in zip(method.model.state_dict().items(), by_hand.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(method.model.net[1].weight, original.net[1].weight)  # the user's model is untouched


class _TripleBatches(OwnRecipe):
    def training_step(self, batch, batch_idx):
        return super().training_step(batch[:2], batch_idx)


def test_recipe_choices_and_errors():
    assert Retrain(nn.Sequential(nn.Flatten(), nn.Linear(64, 10))).recipe == "cross_entropy"
    assert Retrain(OwnRecipe(), recipe="cross_entropy").recipe == "cross_entropy"
    with pytest.raises(ValueError, match=r"`recipe`='model' needs a LightningModule with its own training_step and"
                       r" configure_optimizers, got Sequential"):
        Retrain(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), recipe="model")
    with pytest.raises(ValueError, match=r"`recipe` must be one of \['auto', 'model', 'cross_entropy'\], got 'mine'"):
        Retrain(OwnRecipe(), recipe="mine")
    manual = OwnRecipe()
    manual.automatic_optimization = False
    with pytest.raises(ValueError, match="the module optimises manually; use recipe='cross_entropy'"):
        Retrain(manual)
