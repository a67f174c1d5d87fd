"""A typical Lightning script, left as a user writes it: a LightningCLI over a LitClassifier around an
MLP backbone (its last ``nn.Linear`` followed by a ReLU, as in Lightning's
``backbone_image_classifier`` example) and the script's own LightningDataModule with its own
preprocessing (scikit-learn's 8x8 digits, scaled and normalised by a transform).

Train it unchanged, recording what Naive PS needs by command-line flags only::

    python examples/lit_backbone_classifier.py fit --trainer.max_epochs 30 \\
        --trainer.callbacks+=lightning_unlearn.PrototypeRecorder --trainer.callbacks.path recording.pt

then serve a deletion request on it, from Python
(``UnlearningDataModule(datamodule=DigitsDataModule(), forget=ClassForget(3))`` and ``unlearn``) or the
CLI (``lightning-unlearn unlearn --method SU --method.model lit_backbone_classifier.LitClassifier
--method.checkpoint <ckpt> --data.datamodule lit_backbone_classifier.DigitsDataModule
--data.forget ClassForget --data.forget.classes 3 --output runs/su``, with ``examples/`` on
``PYTHONPATH``); ``tests/test_lightning_example.py`` does both for every method.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, random_split


class Backbone(nn.Module):
    def __init__(self, hidden_dim: int = 128) -> None:
        super().__init__()
        self.l1 = nn.Linear(64, hidden_dim)
        self.l2 = nn.Linear(hidden_dim, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = torch.relu(self.l1(x))
        return torch.relu(self.l2(x))


class LitClassifier(L.LightningModule):
    def __init__(self, hidden_dim: int = 128, learning_rate: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = Backbone(hidden_dim)

    def forward(self, x):
        return self.backbone(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("valid_acc", (self(x).argmax(1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


class Digits(Dataset):
    """The 8x8 digits with the script's own preprocessing: pixels scaled to [0, 1], then standardised."""

    def __init__(self) -> None:
        data = load_digits()
        x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        self.x = (x - 0.3) / 0.4
        self.targets = torch.tensor(data.target, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], self.targets[i]


class DigitsDataModule(L.LightningDataModule):
    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str | None = None) -> None:
        full = Digits()
        self.train, self.val, self.test = random_split(full, [1297, 200, 300], generator=torch.Generator().manual_seed(42))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=self.batch_size)


if __name__ == "__main__":
    LightningCLI(LitClassifier, DigitsDataModule, seed_everything_default=0, save_config_kwargs={"overwrite": True})
