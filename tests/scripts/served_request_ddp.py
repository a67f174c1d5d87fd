"""Serve a class-wise request with NegGrad+ on 1 or N gloo processes; write the outcome, the weights and the accuracies.

The split is uneven on purpose: D_new and D_ref hold 401 and 201 samples, so D_ref (validated,
and the guard's check set: its 185 samples of retained classes) has an odd size and Lightning's
DistributedSampler pads a repeated sample into one process's shard, while the training splits
(D_f 346, D_r 3052 samples of class 2 and the rest) stay even, so every global training batch of
N processes at ``batch / N`` holds the single process's batch (``shard_for_processes``).

Written by rank 0: the outcome (the request's decisions and every check value), the accuracies the
method logs when the Trainer validates the returned model (``SplitAccuracy``: DDP-exact), and the
accuracies a plain ``torchmetrics`` ``MulticlassAccuracy`` reports over the same validation
loaders (the padded shards the Trainer used); beside it, the returned weights. Used by
``tests/test_distributed.py`` as a subprocess (never DDP inside pytest).

    python tests/scripts/served_request_ddp.py CHECKPOINT OUTPUT.json WEIGHTS.pt --devices 2 --batch_size 32
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
from torchmetrics.classification import MulticlassAccuracy

from lightning_unlearn.api import make_trainer
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.forget import ClassForget
from lightning_unlearn.methods.neg_grad_plus import NegGradPlus
from lightning_unlearn.models.classifier import Classifier
from lightning_unlearn.serialization import load_trusted

FORGET_CLASS = 2
NEW_FRACTION, REF_FRACTION = 0.10025, 0.05025  # of MNIST-5k's 4000 training samples: 401 and 201
VAL_SPLITS = ("forget", "ref", "test_retain")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("weights")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    state = load_trusted(args.checkpoint, "checkpoint")
    classifier = Classifier(**state["hyper_parameters"])
    classifier.load_state_dict(state["state_dict"])
    dm = UnlearningDataModule("mnist5k", forget=ClassForget(FORGET_CLASS), seed=0, split_seed=0, new_fraction=NEW_FRACTION,
                              ref_fraction=REF_FRACTION, batch_size=args.batch_size)
    method = NegGradPlus(classifier, seed=0, val_splits=VAL_SPLITS)  # the request on: default target, guard, cadence
    trainer = make_trainer(-1, accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto")
    trainer.fit(method, datamodule=dm)
    # The returned model validated as Lightning does it: DistributedSampler pads an uneven split's shards with a repeat.
    logged = {k: float(v) for d in trainer.validate(method, datamodule=dm, verbose=False) for k, v in d.items()}
    padded, shards = {}, {}
    model = method.model.eval()
    for split, loader in zip(method.validated_splits, trainer.val_dataloaders):
        metric = MulticlassAccuracy(num_classes=method.num_classes, average="micro")  # counts every sample it is given
        with torch.no_grad():
            for batch in loader:
                metric.update(model(batch[0]), batch[1])
        padded[split] = float(metric.compute())  # summed over the processes
        sampler = loader.sampler
        shards[split] = {"sampler": type(sampler).__name__, "per_process": len(sampler), "dataset": len(loader.dataset)}
    if trainer.global_rank == 0:
        outcome = method.outcome.to_dict()
        for key in ("runtime_s", "check_time_s"):
            outcome.pop(key)
        outcome.update(validation=logged, padded=padded, shards=shards, world_size=trainer.world_size,
                       split_sizes={s: len(dm.split_dataset(s)) for s in ("forget", "retain", "ref", "test_forget", "test_retain")})
        torch.save({k: v.detach().clone() for k, v in method.model.state_dict().items()}, args.weights)
        with open(args.output, "w") as f:
            json.dump(outcome, f)
    if torch.distributed.is_initialized():  # end together: a process leaving while its peer still works can abort in gloo's teardown
        trainer.strategy.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
