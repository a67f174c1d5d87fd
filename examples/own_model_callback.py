"""Unlearning on top of the training you already have.

Everything down to ``# --- deletion request`` is an ordinary Lightning script of YOUR model
(nothing from lightning-unlearn in the model or the data), with exactly one added line: the
``PrototypeRecorder`` callback, which records what Naive Prototype Surgery needs (the head at
initialisation and the Gram matrix of the training embeddings) into the checkpoint.

A deletion request ("forget every record of digit 7") is then served in two lines.

    python examples/own_model_callback.py            # ~10 s on a laptop CPU
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_unlearn import ClassForget, UnlearningDataModule, unlearn  # for the deletion request
from lightning_unlearn.callbacks import PrototypeRecorder  # the one added callback


class DigitNet(L.LightningModule):
    """The user's own classifier: a small MLP on 8×8 digits."""

    def __init__(self, hidden: int = 64, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def load_data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's digits as the user's own tensors (1,437 train / 360 test, split by ``seed``)."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = perm[:1437], perm[1437:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main(epochs: int = 30, workdir: str = "runs/own_model", seed: int = 0) -> dict[str, float]:
    L.seed_everything(seed)
    train_set, test_set = load_data(seed)
    model = DigitNet()
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[PrototypeRecorder()],  # <- the one line added to the ordinary training script
    )
    trainer.fit(model, DataLoader(train_set, batch_size=64, shuffle=True))
    checkpoint = Path(workdir) / "digitnet.ckpt"
    trainer.save_checkpoint(checkpoint)

    # --- deletion request: every training record of digit 7 must be forgotten.
    x_train, y_train = train_set.tensors
    dm = UnlearningDataModule.from_datasets(train_set, test_set, forget=ClassForget(7))
    # Served by default: the target (digit 7 at <= 1%, on its training records and on unseen 7s) and the utility
    # guard (the other digits' held-out accuracy at most 2 points below the original's). Naive PS is closed-form:
    # it tries larger ridges in turn until both hold (its outcome line says which one it used).
    unlearned = unlearn(model, dm, method="NaivePS", recording=str(checkpoint))
    x_test, y_test = test_set.tensors
    keep = y_train != 7
    result = {
        "original/forgotten records": accuracy(model, x_train[~keep], y_train[~keep]),
        "unlearned/forgotten records": accuracy(unlearned, x_train[~keep], y_train[~keep]),
        "original/other test digits": accuracy(model, x_test[y_test != 7], y_test[y_test != 7]),
        "unlearned/other test digits": accuracy(unlearned, x_test[y_test != 7], y_test[y_test != 7]),
        "unlearned/test digit 7": accuracy(unlearned, x_test[y_test == 7], y_test[y_test == 7]),
    }
    for key, value in result.items():
        print(f"{key:32s} {100 * value:5.1f}%")
    return result


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--epochs", type=int, default=30)
    cli.add_argument("--workdir", default="runs/own_model")
    cli.add_argument("--seed", type=int, default=0)
    args = cli.parse_args()
    main(args.epochs, args.workdir, args.seed)
