"""Compute every data-dependent metric on 2 CPU processes (gloo) and write the values as JSON.

Usage: python ddp_metrics.py OUTPUT.json

Each process reads its DistributedSampler shard (which pads the uneven splits with repeated
samples) in batches and updates the Metric objects; ``compute`` gathers the states across the
processes. ``single_process()`` computes the same metrics on one process for comparison.
"""

from __future__ import annotations

import json
import os
import socket
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lightning_unlearn.metrics import (
    KLOM,
    EntropyDistance,
    LossMIA,
    MIAEfficacy,
    NeurIPSForgettingScore,
    PredictionKL,
    SplitAccuracy,
    ULiRA,
)

K = 6
SIZES = {"retain": 301, "test": 121, "forget": 93}  # odd: DistributedSampler pads each shard
# per-example scores: N examples, each with the statistic of MODELS unlearned and MODELS retrained models
PER_EXAMPLE_SIZE, MODELS = 77, 8
PER_EXAMPLE = ("ulira", "neurips", "klom")


def make_data() -> dict[str, tuple[torch.Tensor, ...]]:
    data = {}
    for seed, (split, n) in enumerate(SIZES.items()):
        g = torch.Generator().manual_seed(seed)
        target = torch.randint(0, K, (n,), generator=g)
        scale = {"retain": 4.0, "test": 1.5, "forget": 3.0}[split]
        logits = torch.randn(n, K, generator=g) + scale * torch.nn.functional.one_hot(target, K)
        reference = logits + torch.randn(n, K, generator=g)
        data[split] = (logits, target, torch.arange(n) + 100_000 * seed, reference)
    return data


def make_per_example() -> tuple[torch.Tensor, ...]:
    """``(unlearned (N, MODELS), retrained (N, MODELS), indices (N,))``: rows are examples, so a sampler can shard them.

    Half the examples are shifted (told apart), half are not; the per-example Metrics take ``(models, batch)``.
    """
    g = torch.Generator().manual_seed(7)
    shift = torch.where(torch.arange(PER_EXAMPLE_SIZE) % 2 == 0, 1.5, 0.0)[:, None]
    unlearned = torch.randn(PER_EXAMPLE_SIZE, MODELS, generator=g, dtype=torch.float64) + shift
    retrained = torch.randn(PER_EXAMPLE_SIZE, MODELS, generator=g, dtype=torch.float64)
    return unlearned, retrained, torch.arange(PER_EXAMPLE_SIZE) + 500_000


def _metrics() -> dict[str, object]:
    return {
        "acc_forget": SplitAccuracy(),
        "mia_efficacy": MIAEfficacy(),
        "loss_mia": LossMIA(),
        "entropy_distance": EntropyDistance(),
        "prediction_kl": PredictionKL(num_classes=K),
        "ulira": ULiRA(),
        "neurips": NeurIPSForgettingScore(retain_accuracy=(0.9, 0.95), test_accuracy=(0.8, 0.85)),
        "klom": KLOM(),
    }


def _update(metrics: dict, logits, target, idx, reference, split: str) -> None:
    metrics["mia_efficacy"].update(logits, target, idx, split)
    if split == "forget":
        metrics["acc_forget"].update(logits, target, idx)
        metrics["entropy_distance"].update(logits, reference, idx)
        metrics["prediction_kl"].update(logits, reference, idx)
    if split in ("forget", "test"):
        metrics["loss_mia"].update(logits, target, idx, split)


def _update_per_example(metrics: dict, unlearned, retrained, idx) -> None:
    for name in PER_EXAMPLE:
        metrics[name].update(unlearned.T, retrained.T, idx)


def _values(metrics: dict) -> dict[str, list[float]]:
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        if isinstance(value, dict):  # the per-example scores: every entry, in key order
            out[name] = [float(value[k]) for k in sorted(value)]
        else:
            out[name] = [float(v) for v in value] if isinstance(value, tuple) else [float(value)]
    return out


def single_process() -> dict[str, list[float]]:
    metrics = _metrics()
    for split, tensors in make_data().items():
        _update(metrics, *tensors, split)
    _update_per_example(metrics, *make_per_example())
    return _values(metrics)


def _worker(rank: int, world: int, port: int, output: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metrics = _metrics()
        seen = {}
        for split, tensors in make_data().items():
            dataset = TensorDataset(*tensors)
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=1)
            seen[split] = len(sampler)
            for batch in DataLoader(dataset, batch_size=16, sampler=sampler):
                _update(metrics, *batch, split)
        dataset = TensorDataset(*make_per_example())
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=1)
        seen["per_example"] = len(sampler)
        for batch in DataLoader(dataset, batch_size=16, sampler=sampler):
            _update_per_example(metrics, *batch)
        values = _values(metrics)
        if rank == 0:
            with open(output, "w") as fh:
                json.dump({"values": values, "shard_sizes": seen}, fh)
    finally:
        dist.destroy_process_group()


def main(output: str, world: int = 2) -> None:
    torch.set_num_threads(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the workers inherit the imports (spawn would re-import torch and lightning in each).
    torch.multiprocessing.start_processes(_worker, args=(world, port, output), nprocs=world, join=True, start_method="fork")


if __name__ == "__main__":
    main(sys.argv[1])
