"""Cost of one training step of SU, SULI, PRU and δ-Targeted vs a plain supervised step.

All five runs use the same network, batch size, precision and device, side by side in one
process; a callback times every training step (with device synchronisation) and the script
prints the median and mean step time and their ratios to the supervised step. The mean
includes work done once per epoch inside a step (PRU's classifier phase on cached
embeddings); the targets of every method are computed once at fit start (SULI: once per
layer), outside the steps.

Usage::

    python benchmarks/bench_soft_label_steps.py                       # CPU, fp32, LeNet-5
    python benchmarks/bench_soft_label_steps.py --accelerator cuda --precision bf16-mixed --model resnet18
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_unlearn import ClassForget, Classifier, UnlearningDataModule
from lightning_unlearn.methods import get_method
from lightning_unlearn.models import build_model


class StepTimer(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._t0 = warmup, [], 0.0

    def _sync(self, module) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._t0)


def time_steps(module, dm, args) -> list[float]:
    timer = StepTimer(args.warmup)
    trainer = Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.steps + args.warmup,
                      max_epochs=10_000, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
    trainer.fit(module, datamodule=dm)
    return timer.times[args.warmup :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    parser.add_argument("--model", default="lenet5", choices=["lenet5", "allcnn", "resnet18"])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    seed_everything(0, verbose=False)

    dm = UnlearningDataModule(args.dataset, forget=ClassForget(3), batch_size=args.batch_size, seed=0)
    dm.setup()
    net = build_model(args.model, dm.num_classes, dm.input_shape)
    rows = {"supervised": time_steps(Classifier(net, dm.num_classes, dm.input_shape), dm, args)}
    epochs = 10_000  # the step budget ends every run
    for name, options in (("SU", {}), ("SULI", {"epochs_per_layer": epochs // 2}), ("PRU", {}), ("DeltaTargeted", {"loss_threshold": 0.0})):
        rows[name] = time_steps(get_method(name)(net, max_epochs=epochs, **options), dm, args)
    device = torch.cuda.get_device_name() if args.accelerator == "cuda" else "CPU"
    print(f"{args.model} on {device}, precision {args.precision}, batch {args.batch_size}, {args.steps} timed steps each")
    base_med, base_mean = statistics.median(rows["supervised"]), statistics.fmean(rows["supervised"])
    print(f"{'run':<14}{'median ms':>10}{'mean ms':>10}{'x median':>10}{'x mean':>9}")
    for name, times in rows.items():
        med, mean = statistics.median(times), statistics.fmean(times)
        print(f"{name:<14}{1e3 * med:>10.2f}{1e3 * mean:>10.2f}{med / base_med:>10.2f}{mean / base_mean:>9.2f}")


if __name__ == "__main__":
    main()
