"""Every method's per-example evidence of forgetting on MNIST-5k / LeNet-5: class-wise and random requests.

For each request (class 3; random 10%) one bank of K originals and K retrained models is built
(``lightning_unlearn.audit``) and every registered method unlearns each original under its
defaults (the default request included). The table holds the U-LiRA AUC and TPR at 1% FPR on D_f,
the NeurIPS 2023 forgetting quality F and score, and KLOM's median on D_f, next to the untouched
original and the half-vs-half Retrain reference (the ideal).

    PYTHONPATH=. python benchmarks/audit_all_methods.py --k 8 --cache .lightning_unlearn/banks

The banks are cached: an interrupted run resumes. Results: ``--output`` (JSON and Markdown).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lightning_unlearn import ClassForget, RandomForget, UnlearningDataModule, audit, available_methods
from lightning_unlearn.atomic import atomic_path, write_json_atomic

COLUMNS = ("U-LiRA AUC", "TPR@1%FPR", "NeurIPS F", "NeurIPS score", "KLOM p50 D_f")


def cells(row: dict) -> list[str]:
    u, n, k = row["ulira_forget"], row.get("neurips") or {}, row["klom"]["forget"]
    return [f"{u['auc']:.3f}", f"{u['tpr@1%fpr']:.3f}", f"{n['forgetting_quality']:.3f}" if n else "–",
            f"{n['score']:.3f}" if n else "–", f"{k['p50']:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--methods", type=json.loads, default=None)
    parser.add_argument("--cache", default=".lightning_unlearn/banks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/audit_all_methods")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods or [m for m in available_methods() if m != "Retrain"]
    requests = {"class 3": ClassForget(3), "random 10%": RandomForget(fraction=0.1)}
    results, lines = {}, []
    for label, forget in requests.items():
        dm = UnlearningDataModule("mnist5k", forget=forget, batch_size=64)
        start = time.perf_counter()
        report = audit(dm, methods, bank_size=args.k, max_epochs=args.epochs, cache_dir=args.cache)
        results[label] = {"rows": report["rows"], "bank": report["bank"], "seconds": time.perf_counter() - start}
        lines += ["", f"### {label} (K = {args.k})", "", "| method | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        lines += [f"| {name} | " + " | ".join(cells(row)) + " |" for name, row in report["rows"].items()]
        print("\n".join(lines), flush=True)
    out = Path(args.output)
    write_json_atomic(out.with_suffix(".json"), results)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text("# Per-example audit of every method: MNIST-5k, LeNet-5\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
