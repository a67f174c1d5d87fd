"""How long `evaluate` takes on MNIST-5k / LeNet-5, and what sharing the forward passes saves.

Side by side in one run:
  * evaluate(unlearned, dm, original, reference) with every metric (MIA + loss MIA),
  * the same without the attacks,
  * a naive evaluation that runs a fresh forward pass for every metric that needs a split
    (what computing each metric independently would cost); the ratio is the saving.

Usage:
    python benchmarks/evaluate_speed.py [--accelerator cpu|cuda] [--repeats 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
from lightning_unlearn.evaluation import evaluate
from lightning_unlearn.outputs import predict


def _naive(models: dict, dm: UnlearningDataModule) -> None:
    """One forward pass per (metric, split, model): accuracies, MIA, loss MIA, ED, prediction KL."""
    needs = {
        "accuracy": ("forget", "retain", "test", "test_forget", "test_retain"),
        "mia": ("retain", "test", "forget"),
        "loss_mia": ("forget", "test_forget"),
    }
    for role, model in models.items():
        for splits in needs.values():
            for split in splits:
                predict(model, dm.dataloader(split))
        if role != "reference":  # ED on every split and prediction KL on D_tf, each against the reference
            for split in (*needs["accuracy"], "test_forget"):
                predict(model, dm.dataloader(split))
                predict(models["reference"], dm.dataloader(split))


def _time(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accelerator", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.accelerator)

    dm = UnlearningDataModule("mnist5k", forget=ClassForget(3), seed=0, new_fraction=0.1, ref_fraction=0.05, batch_size=64)
    dm.setup()
    trainer_kwargs = {"accelerator": args.accelerator}
    original = train_classifier(dm, "lenet5", max_epochs=args.epochs, seed=0, **trainer_kwargs).eval()
    reference = unlearn(original, dm, "Retrain", max_epochs=args.epochs, lr=1e-3, trainer_kwargs=trainer_kwargs).eval()
    unlearned = unlearn(original, dm, "GradientAscent", max_epochs=1, trainer_kwargs=trainer_kwargs).eval()
    models = {"unlearned": unlearned.to(device), "original": original.to(device), "reference": reference.to(device)}

    sizes = {s: len(dm.split_dataset(s)) for s in ("forget", "retain", "test", "test_forget", "test_retain")}
    print(f"MNIST-5k splits: {sizes}; device {device}; torch threads {torch.get_num_threads()}")
    full = _time(lambda: evaluate(**{"unlearned": models["unlearned"]}, datamodule=dm, original=models["original"], reference=models["reference"]), args.repeats)
    no_attack = _time(lambda: evaluate(models["unlearned"], dm, models["original"], models["reference"], mia=False, loss_mia=False), args.repeats)
    naive = _time(lambda: _naive(models, dm), args.repeats)
    print(f"evaluate, all metrics (3 models):        median {full[0]:.2f} s (min {full[1]:.2f})")
    print(f"evaluate, no MIA / loss MIA (3 models):  median {no_attack[0]:.2f} s (min {no_attack[1]:.2f})")
    print(f"naive forward passes only (per metric):  median {naive[0]:.2f} s (min {naive[1]:.2f})")
    print(f"ratio naive passes / evaluate without attacks: {naive[0] / no_attack[0]:.1f}x")


if __name__ == "__main__":
    main()
