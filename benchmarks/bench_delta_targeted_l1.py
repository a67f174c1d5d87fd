"""Parameter change of δ-Targeted^λ vs Gradient Ascent at the same forget accuracy (paper 004, §5.1).

Forgets ``--count`` random training samples of MNIST-5k from one LeNet-5 and follows every run
epoch by epoch: forget accuracy, retain accuracy and the L1 parameter change (all parameters and
the last layer, ``parameter_change``). For each forget-accuracy level it then prints the L1 at the
first epoch each method reaches it, so the methods are compared at the same forget accuracy.
Gradient Ascent runs until its loss is no longer finite (the suite's guard stops it).

Usage::

    python benchmarks/bench_delta_targeted_l1.py
    python benchmarks/bench_delta_targeted_l1.py --count 512 --epochs 100
"""

from __future__ import annotations

import argparse
import logging
import warnings

import torch
from lightning.pytorch import Callback

from lightning_unlearn import NonFiniteLossError, RandomForget, UnlearningDataModule, split_accuracies, train_classifier, unlearn
from lightning_unlearn.metrics.functional import parameter_change

RUNS: dict[str, dict[str, object]] = {
    "GA (SGD lr 1e-3)": {"method": "GradientAscent"},
    "GA (Adam lr 1e-4)": {"method": "GradientAscent", "optimizer": "adam", "lr": 1e-4},
    "δ-T λ=1 (paper)": {"method": "DeltaTargeted", "lam": 1.0},
    "δ-T λ=3 (paper)": {"method": "DeltaTargeted", "lam": 3.0},
    "δ-T λ=1 lr 1e-3": {"method": "DeltaTargeted", "lam": 1.0, "lr": 1e-3},
}
LEVELS = (0.9, 0.7, 0.5, 0.3, 0.1, 0.05)


class Trajectory(Callback):
    """(epoch, forget acc, retain acc, L1 all, L1 head) after every training epoch."""

    def __init__(self, original, dm) -> None:
        self.original, self.dm, self.rows = original, dm, []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        model = pl_module.model
        was_training = model.training
        model.eval()
        acc = split_accuracies(model, self.dm, ("forget", "retain"))
        change = parameter_change(model, self.original)
        model.train(was_training)
        self.rows.append((trainer.current_epoch + 1, acc["forget"], acc["retain"], change["l1"], change["l1_head"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=128, help="number of random forget samples")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    dm = UnlearningDataModule("mnist5k", forget=RandomForget(count=args.count), seed=0, batch_size=64)
    dm.setup()
    original = train_classifier(dm, "lenet5", max_epochs=12, lr=1e-3, seed=0).eval()
    start = split_accuracies(original, dm, ("forget", "retain"))
    print(f"LeNet-5, MNIST-5k, {args.count} random forget samples; original: forget {start['forget']:.3f}, retain {start['retain']:.3f}")

    trajectories = {}
    for name, spec in RUNS.items():
        options = dict(spec)
        method = options.pop("method")
        options.setdefault("max_epochs", args.epochs)
        if method == "DeltaTargeted":
            options.setdefault("loss_threshold", 0.0)
        trajectory = Trajectory(original, dm)
        try:
            unlearn(original, dm, method=method, callbacks=[trajectory], trainer_kwargs={"limit_val_batches": 0}, **options)
            end = "max epochs"
        except NonFiniteLossError:
            end = "non-finite loss"
        trajectories[name] = trajectory.rows
        last = trajectory.rows[-1]
        print(f"{name:<20} ended ({end}) after epoch {last[0]}: forget {last[1]:.3f}, retain {last[2]:.3f}, L1 {last[3]:.1f}")

    print("\nL1 change (all / last layer) and retain accuracy at the first epoch the forget accuracy is <= level")
    print(f"{'run':<20}" + "".join(f"{'<= ' + str(level):>22}" for level in LEVELS))
    for name, rows in trajectories.items():
        cells = []
        for level in LEVELS:
            hit = next((r for r in rows if r[1] <= level), None)
            cells.append(f"{hit[3]:.0f}/{hit[4]:.1f} r{hit[2]:.2f}" if hit else "never")
        print(f"{name:<20}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
