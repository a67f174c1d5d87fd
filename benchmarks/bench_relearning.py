"""The PRU paper's relearning test (002, §5.3), side by side for PRU and the boundary-shifting baselines.

One original model is trained with the paper's recipe (SGD, momentum 0.9, batch 64), one class
is forgotten by each method, each run stopped as soon as its forget accuracy touches the target
("touching the forgetting accuracy of less than 0.01", §5.1; checked 16 times per pass over the
data), and every unlearned model then goes through the relearning probe: fine-tuning on D_new
restricted to the retained classes (SGD lr 1e-3, momentum 0.9). The script prints D_tf / D_tr
accuracy after unlearning and the D_tf accuracy after every relearning epoch.

Usage::

    python benchmarks/bench_relearning.py                                   # LeNet-5, MNIST-5k
    python benchmarks/bench_relearning.py --model allcnn --epochs 5
    python benchmarks/bench_relearning.py --model allcnn --option PRU:lr=1e-5 --option PRU:head_lr=1e-4
"""

from __future__ import annotations

import argparse
import ast
import logging
import time
import warnings

import torch
from lightning.pytorch import seed_everything

from lightning_unlearn import ClassForget, Classifier, UnlearningDataModule, create_method, make_trainer, split_accuracies, unlearn
from lightning_unlearn.benchmark import check_interval
from lightning_unlearn.callbacks import ForgetAccuracyStop
from lightning_unlearn.relearning import relearn

METHODS = ("PRU", "BoundaryShrink", "BoundaryExpanding", "RandomLabel", "GradientAscent")


def parse_options(items: list[str]) -> dict[str, dict[str, object]]:
    """``["PRU:lr=1e-5", ...]`` -> ``{"PRU": {"lr": 1e-05}}``."""
    options: dict[str, dict[str, object]] = {}
    for item in items:
        method, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        if not method or not key or not value:
            raise SystemExit(f"--option must look like METHOD:key=value, got {item!r}")
        options.setdefault(method, {})[key] = ast.literal_eval(value)
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lenet5", choices=["lenet5", "allcnn", "resnet18"])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--forget-class", type=int, default=3)
    parser.add_argument("--original-epochs", type=int, default=10)
    parser.add_argument("--original-lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=None, help="max_epochs of every method (default: each method's own)")
    parser.add_argument("--target", type=float, default=0.01, help="forget accuracy at which unlearning stops")
    parser.add_argument("--relearn-epochs", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--option", action="append", default=[], help="METHOD:key=value, repeatable")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    options = parse_options(args.option)

    dm = UnlearningDataModule(args.dataset, forget=ClassForget(args.forget_class), seed=0, new_fraction=0.1, ref_fraction=0.05, batch_size=64)
    dm.setup()
    seed_everything(0, verbose=False)
    original = Classifier(args.model, dm.num_classes, dm.input_shape, optimizer="sgd", lr=args.original_lr, momentum=0.9)
    start = time.perf_counter()
    make_trainer(args.original_epochs, None, limit_val_batches=0).fit(original, datamodule=dm)
    original.eval()
    print(f"{args.model} on {args.dataset}, forgetting class {args.forget_class}; original trained in {time.perf_counter() - start:.1f} s")

    models = {"original": original}
    header = f"{'model':<18}{'D_tf':>7}{'D_tr':>7}{'time s':>8}  relearning: D_tf after epoch 0..{args.relearn_epochs}"
    seconds: dict[str, float] = {}
    for name in args.methods:
        kwargs = dict(options.get(name, {}))
        if args.epochs is not None:
            kwargs.setdefault("max_epochs", args.epochs)
        method = create_method(name, original, **kwargs)
        stop = ForgetAccuracyStop(target=args.target, verbose=False)
        start = time.perf_counter()
        models[name] = unlearn(original, dm, method=method, callbacks=[stop], trainer_kwargs=check_interval(method, dm, 16))
        seconds[name] = time.perf_counter() - start
    print(header)
    for name, model in models.items():
        acc = split_accuracies(model, dm, ("test_forget", "test_retain"))
        curve = relearn(model, dm, epochs=args.relearn_epochs).forget_accuracy
        print(f"{name:<18}{acc['test_forget']:>7.3f}{acc['test_retain']:>7.3f}{seconds.get(name, 0.0):>8.1f}  " + " ".join(f"{a:.2f}" for a in curve), flush=True)


if __name__ == "__main__":
    main()
