"""``make demo``: train a reference model on MNIST-5k and serve one class-wise deletion request."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.table import Table

from lightning_unlearn import ClassForget, UnlearningDataModule, split_accuracies, train_classifier, unlearn


def main() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    console = Console()
    dm = UnlearningDataModule("mnist5k", forget=ClassForget(3), seed=0)
    console.print("[bold]Training LeNet-5 on MNIST-5k[/bold] (4,000 train / 1,000 test digits)")
    original = train_classifier(dm, "lenet5", max_epochs=12)
    table = Table(title="Forgetting class 3 (accuracy %)")
    for column in ("model", "D_f", "D_r", "D_t", "D_tf", "D_tr"):
        table.add_column(column)
    rows = {"original": original}
    rows["Retrain"] = unlearn(original, dm, method="Retrain", max_epochs=12, lr=1e-3)
    rows["FineTune"] = unlearn(original, dm, method="FineTune")
    rows["GradientAscent"] = unlearn(original, dm, method="GradientAscent")
    for name, model in rows.items():
        acc = split_accuracies(model, dm)
        table.add_row(name, *(f"{100 * acc[s]:.1f}" for s in ("forget", "retain", "test", "test_forget", "test_retain")))
    console.print(table)


if __name__ == "__main__":
    main()
