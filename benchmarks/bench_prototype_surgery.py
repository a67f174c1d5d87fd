"""Speed of Prototype Surgery: PS and Naive PS against one plain no-grad forward pass over D_f.

All three are timed in the same run, on the same model, forget loader and batch size, and
the ratios are printed (goals: PS <= 1.5x, Naive PS <= 1.3x the forward pass). Each figure
is the median of ``--repeats`` runs after one warm-up run.

* ``forward``: ``model(x)`` over the forget loader, no grad, eval mode (autocast under bf16-mixed).
* ``direct``: ``method.surgery(loader)`` without a Trainer (the unlearning work itself).
* ``trainer``: ``Trainer.fit(method)``; ``runtime_s`` is the method's own timer (fit start to
  fit end), ``fit wall`` the whole ``fit`` call (Trainer set-up included), reported separately.

Examples::

    python benchmarks/bench_prototype_surgery.py                      # LeNet-5 / MNIST-5k, CPU
    python benchmarks/bench_prototype_surgery.py --model resnet18 --accelerator cuda \\
        --precision bf16-mixed --forget-count 5000                    # CIFAR-shaped synthetic data
"""

from __future__ import annotations

import os
import sys

if not any(word in " ".join(sys.argv) for word in ("cuda", "gpu")) and "--keep-gpus-visible" not in sys.argv:
    # A CPU run of a CUDA build of torch on a machine without GPU: torch.optim's per-step
    # torch.cuda.is_available() then re-probes NVML every step (~0.3 ms, 9 ms of PS's 32 head
    # steps). A CPU-only wheel or a GPU machine never pays this; hide the GPUs to measure that.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse
import contextlib
import copy
import logging
import statistics
import time
import warnings

import torch
from torch.utils.data import TensorDataset

from lightning_unlearn import ClassForget, Classifier, IndexForget, UnlearningDataModule, make_trainer
from lightning_unlearn.callbacks import PrototypeRecorder
from lightning_unlearn.methods import PS, NaivePS


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["lenet5", "resnet18"], default="lenet5")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--forget-count", type=int, default=5000, help="forget samples (resnet18 synthetic data)")
    parser.add_argument("--forget-class", type=int, default=3, help="class forgotten (lenet5 / MNIST-5k)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep-gpus-visible", action="store_true", help="do not hide GPUs on a CPU run (see top of file)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: stable timings on a shared machine)")
    return parser.parse_args()


def build(args: argparse.Namespace) -> tuple[UnlearningDataModule, Classifier, PrototypeRecorder]:
    """A data module, a classifier and its recorder (W0 at fit start, G at fit end of a short fit)."""
    if args.model == "lenet5":
        dm = UnlearningDataModule("mnist5k", forget=ClassForget(args.forget_class), batch_size=128, eval_batch_size=args.batch_size)
        clf = Classifier("lenet5", 10, (1, 28, 28))
    else:
        gen = torch.Generator().manual_seed(0)
        n = args.forget_count + 1000
        x, y = torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)
        test = TensorDataset(x[:500], y[:500])
        dm = UnlearningDataModule.from_datasets(TensorDataset(x, y), test, IndexForget(list(range(args.forget_count))),
                                                num_classes=10, batch_size=128, eval_batch_size=args.batch_size)
        clf = Classifier("resnet18", 10, (3, 32, 32))
    dm.setup()
    recorder = PrototypeRecorder()
    make_trainer(1, [recorder], accelerator=args.accelerator, precision=args.precision, limit_train_batches=5,
                 limit_val_batches=0).fit(clf, datamodule=dm)
    return dm, clf.to(torch.device("cuda" if args.accelerator in ("cuda", "gpu") else "cpu")).eval(), recorder


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    dm, clf, recorder = build(args)
    device = next(clf.parameters()).device
    loader = dm.dataloader("forget", batch_size=args.batch_size)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision.startswith("bf16")
                else contextlib.nullcontext())

    def forward() -> None:
        with torch.no_grad(), autocast:
            for batch in loader:
                clf(batch[0].to(device, non_blocking=True))

    def direct(cls, **options):
        def run() -> float:
            method = cls(clf, batch_size=args.batch_size, **copy.deepcopy(options)).to(device)
            method.surgery(loader)
            return method.runtime_s
        return run

    def via_trainer(cls, **options):
        def run() -> tuple[float, float]:
            method = cls(clf, batch_size=args.batch_size, **copy.deepcopy(options))
            trainer = make_trainer(1, accelerator=args.accelerator, precision=args.precision, limit_val_batches=0)
            start = time.perf_counter()
            trainer.fit(method, datamodule=dm)
            return method.runtime_s, time.perf_counter() - start
        return run

    def median_of(run) -> tuple[float, ...]:
        run()
        values = [run() for _ in range(args.repeats)]
        return tuple(statistics.median(v) for v in zip(*[v if isinstance(v, tuple) else (v,) for v in values]))

    t_forward = median_time(forward, args.repeats, device)
    methods = {"PS": (PS, {}), "NaivePS": (NaivePS, {"recording": recorder.recording})}
    print(f"model={args.model} device={device} precision={args.precision} |D_f|={len(dm.indices['forget'])}"
          f" batch={args.batch_size} threads={args.threads} repeats={args.repeats} (median)")
    print(f"{'':10s} {'time (ms)':>10s} {'x forward':>10s}")
    print(f"{'forward':10s} {1e3 * t_forward:10.2f} {1.0:10.2f}")
    for name, (cls, options) in methods.items():
        (t_direct,) = median_of(direct(cls, **options))
        t_runtime, t_wall = median_of(via_trainer(cls, **options))
        print(f"{name + ' direct':10s} {1e3 * t_direct:10.2f} {t_direct / t_forward:10.2f}")
        print(f"{name + ' fit':10s} {1e3 * t_runtime:10.2f} {t_runtime / t_forward:10.2f}   (runtime_s; whole"
              f" Trainer.fit wall {1e3 * t_wall:.1f} ms = {t_wall / t_forward:.1f}x)")


if __name__ == "__main__":
    main()
