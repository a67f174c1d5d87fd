"""Naive PS serving a request: the ridge ladder keeps the retained classes within the guard where a tiny ridge
wrecks them (an MLP on sklearn digits, trained by the user's own loop with Adam or SGD)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_unlearn import ClassForget, UnlearningDataModule, unlearn
from lightning_unlearn.callbacks import PrototypeRecorder


class MLP(L.LightningModule):
    def __init__(self, optimizer: str) -> None:
        super().__init__()
        self.optimizer = optimizer
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=3e-3)
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


def _retained_accuracy(model: nn.Module, test: TensorDataset, forgotten: int) -> float:
    x, y = test.tensors
    keep = y != forgotten
    with torch.no_grad():
        return float((model.eval()(x[keep]).argmax(1) == y[keep]).float().mean())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_request_is_served_within_the_guard_where_a_tiny_ridge_wrecks_the_other_classes(optimizer):
    digits = load_digits()
    x, y = torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)
    train, test = TensorDataset(x[:1437], y[:1437]), TensorDataset(x[1437:], y[1437:])
    for seed in (0, 1):
        L.seed_everything(seed, verbose=False)
        model, recorder = MLP(optimizer), PrototypeRecorder()
        L.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, callbacks=[recorder]).fit(model, DataLoader(train, batch_size=64, shuffle=True))
        dm = UnlearningDataModule.from_datasets(train, test, forget=ClassForget(7))
        before = _retained_accuracy(model, test, 7)
        # Measured (seeds 0-1): the paper's ridge alone (no request) costs the other digits 13-20 points with Adam
        # and 21-27 with SGD here (74 on one SGD lr 0.05 seed); the ladder's choice costs 0.9-2.0.
        fixed = unlearn(model, dm, method="NaivePS", recording=recorder.recording.copy(), target=None, guard=None)
        assert _retained_accuracy(fixed, test, 7) < before - 0.05
        served = unlearn(model, dm, method="NaivePS", recording=recorder.recording.copy())
        outcome = served.unlearning_outcome
        assert outcome.reached and _retained_accuracy(served, test, 7) > before - 0.04, outcome.summary()
        assert any("the closed form used ridge" in note for note in outcome.notes), outcome.notes
