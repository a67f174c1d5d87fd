"""One UGradSL step vs one plain training step on the same concatenated batch, timed side by side.

The plain step is ``CE(model(cat(x_r, x_f)), cat(y_r, y_f))`` + backward + optimiser step;
the UGradSL step is the method's own ``unlearning_step`` on ``{"retain", "forget"}`` (one
forward with embeddings, self-adaptive α, GLS loss) + backward + optimiser step. Rounds
alternate between the two so both see the same machine state; medians and their ratio
are printed (target: <= 1.15x on a GPU with bf16-mixed).

Usage:
    python benchmarks/bench_ugradsl_step.py --model resnet18 --batch-size 128 --accelerator cuda --precision bf16-mixed
    python benchmarks/bench_ugradsl_step.py --model lenet5 --accelerator cpu
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch.nn import functional as F

from lightning_unlearn.methods import UGradSL
from lightning_unlearn.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lenet5", "allcnn", "resnet18"], default="lenet5")
    parser.add_argument("--batch-size", type=int, default=128, help="size of EACH of the retain and forget batches")
    parser.add_argument("--accelerator", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument("--alpha", type=float, default=None, help="fixed smoothing rate (default: self-adaptive)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    args = parser.parse_args()

    device = torch.device(args.accelerator)
    shape = (1, 28, 28) if args.model == "lenet5" else (3, 32, 32)
    torch.manual_seed(0)
    method = UGradSL(build_model(args.model, 10, shape), alpha=args.alpha, lr=1e-4).to(device)
    model = method.model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    b = args.batch_size
    x_r, x_f = torch.randn(b, *shape, device=device), torch.randn(b, *shape, device=device)
    y_r, y_f = torch.randint(0, 10, (b,), device=device), torch.randint(0, 10, (b,), device=device)
    index = torch.arange(b, device=device)
    batch = {"retain": (x_r, y_r, index), "forget": (x_f, y_f, index)}
    x_all, y_all = torch.cat([x_r, x_f]), torch.cat([y_r, y_f])
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16-mixed" else contextlib.nullcontext()
    )

    def plain_step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x_all), y_all)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def ugradsl_step() -> None:
        with autocast:
            loss = method.unlearning_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    method.log_dict = lambda *a, **k: None  # type: ignore[method-assign]  # no Trainer attached here

    def timed(step) -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        _sync(device)
        return (time.perf_counter() - start) / args.steps

    for _ in range(3):  # warm-up (cudnn autotuning, allocator)
        plain_step()
        ugradsl_step()
    plain, ugradsl = [], []
    for _ in range(args.rounds):
        plain.append(timed(plain_step))
        ugradsl.append(timed(ugradsl_step))
    p, u = statistics.median(plain), statistics.median(ugradsl)
    print(f"device={device} model={args.model} batch={b}+{b} precision={args.precision} alpha={'adaptive' if args.alpha is None else args.alpha}")
    print(f"plain step   (one CE over the concatenated batch): {p * 1e3:8.3f} ms")
    print(f"UGradSL step (one forward, adaptive alpha, GLS)   : {u * 1e3:8.3f} ms")
    print(f"ratio UGradSL / plain: {u / p:.3f}x  (target <= 1.15x on GPU bf16-mixed)")


if __name__ == "__main__":
    main()
