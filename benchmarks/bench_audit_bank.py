"""Time a K = 8 model bank and its audit on MNIST-5k / LeNet-5 (random 10% request), then the cached re-run.

Usage: PYTHONPATH=. python benchmarks/bench_audit_bank.py [--k 8] [--method finetune] [--epochs 10]
Prints the build time, the cached re-run time and the audit's Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from lightning_unlearn import RandomForget, UnlearningDataModule, audit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--method", default="finetune")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="bank-")
    dm = UnlearningDataModule("mnist5k", forget=RandomForget(fraction=0.1), batch_size=64)
    start = time.perf_counter()
    report = audit(dm, args.method, bank_size=args.k, max_epochs=args.epochs, cache_dir=cache)
    built = time.perf_counter() - start
    start = time.perf_counter()
    audit(dm, args.method, bank_size=args.k, max_epochs=args.epochs, cache_dir=cache)
    cached = time.perf_counter() - start
    print(f"bank K={args.k} + audit: {built:.1f} s; cached re-run: {cached:.2f} s (cache {cache})")
    print(report["markdown"])


if __name__ == "__main__":
    main()
