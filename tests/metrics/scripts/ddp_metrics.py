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

from lightning_unlearn.metrics import EntropyDistance, LossMIA, MIAEfficacy, PredictionKL, SplitAccuracy

K = 6
SIZES = {"retain": 301, "test": 121, "forget": 93}  # odd: DistributedSampler pads each shard


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


def _metrics() -> dict[str, object]:
    return {
        "acc_forget": SplitAccuracy(),
        "mia_efficacy": MIAEfficacy(),
        "loss_mia": LossMIA(),
        "entropy_distance": EntropyDistance(),
        "prediction_kl": PredictionKL(num_classes=K),
    }


def _update(metrics: dict, logits, target, idx, reference, split: str) -> None:
    metrics["mia_efficacy"].update(logits, target, idx, split)
    if split == "forget":
        metrics["acc_forget"].update(logits, target, idx)
        metrics["entropy_distance"].update(logits, reference, idx)
        metrics["prediction_kl"].update(logits, reference, idx)
    if split in ("forget", "test"):
        metrics["loss_mia"].update(logits, target, idx, split)


def _values(metrics: dict) -> dict[str, list[float]]:
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        out[name] = [float(v) for v in value] if isinstance(value, tuple) else [float(value)]
    return out


def single_process() -> dict[str, list[float]]:
    metrics = _metrics()
    for split, tensors in make_data().items():
        _update(metrics, *tensors, split)
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
