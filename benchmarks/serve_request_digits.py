"""Do the defaults transfer? Every method with its defaults on data and a model they were not tuned on.

The defaults were chosen on MNIST-5k with LeNet-5 and All-CNN (``benchmarks/tune_defaults.py``).
This runs every method, with its default request (target, guard, budget), on scikit-learn's 8×8
digits, with LeNet-5 and with a user's plain ``nn.Sequential`` MLP (``Flatten → Linear(64, 128) →
ReLU → Linear(128, 10)``), for class-wise (class 3; classes 1 and 7 together) and random 10%
requests, on ``--seeds`` (the seed draws the split and trains the original).

Per run it records the outcome (target reached, stopped by, steps) and, on the *test* split that
no check sees, the accuracy of retained and forgotten classes before and after. A class-wise run
is *served* when the target is reached; the table also counts the looser criterion "forget
accuracy on D_f at most 5% and retained test accuracy within 5 points of the original".

    python benchmarks/serve_request_digits.py --seeds '[0,1,2]' --output benchmarks/results/serve_request_digits.json

One JSON record per run (resumable), then a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

REQUESTS = {"class 3": ("class", [3]), "classes 1+7": ("class", [1, 7]), "random 10%": ("random", None)}


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _datamodule(request: str, seed: int) -> Any:
    from lightning_unlearn import ClassForget, RandomForget, UnlearningDataModule

    kind, classes = REQUESTS[request]
    forget = ClassForget(classes) if kind == "class" else RandomForget(fraction=0.1)
    return UnlearningDataModule("digits", forget=forget, batch_size=32, seed=seed, split_seed=seed)


def _test_accuracy(model: nn.Module, dm: Any, forgotten: set[int]) -> dict[str, float]:
    from lightning_unlearn.passes import class_counts

    correct, total = class_counts(model, dm.dataloader("test"), dm.num_classes, None)
    mask = torch.tensor([c in forgotten for c in range(dm.num_classes)])
    out = {"test_retained": float(correct[~mask].sum() / total[~mask].sum())}
    if mask.any():
        out["test_forgotten"] = float(correct[mask].sum() / total[mask].sum().clamp(min=1))
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from lightning_unlearn import available_methods, create_method, train_classifier, unlearn
    from lightning_unlearn.benchmark_runs import _method_options
    from lightning_unlearn.callbacks import PrototypeRecorder
    from lightning_unlearn.data.datamodule import write_json_atomic
    from lightning_unlearn.outputs import predict

    torch.set_num_threads(args.threads)
    out = Path(args.output)
    records: list[dict[str, Any]] = json.loads(out.read_text())["runs"] if out.exists() else []
    done = {(r["model"], r["request"], r["seed"], r["method"]) for r in records}
    methods = args.methods or [m for m in available_methods() if m != "Retrain"]
    for model_name in args.models:
        for seed in args.seeds:
            original = recorder = None
            for request in REQUESTS:
                pending = [m for m in methods if (model_name, request, seed, m) not in done]
                if not pending:
                    continue
                dm = _datamodule(request, seed)
                if original is None:  # one original per (model, seed): the training split depends on the seed only
                    recorder = PrototypeRecorder()
                    torch.manual_seed(seed)  # the MLP's initial weights: the same whatever ran before in this process
                    net = mlp() if model_name == "mlp" else model_name
                    original = train_classifier(dm, net, max_epochs=args.original_epochs, seed=seed, callbacks=[recorder])
                kind, classes = REQUESTS[request]
                forgotten = set(classes or [])
                before = _test_accuracy(original, dm, forgotten)
                for name in pending:
                    record: dict[str, Any] = {"model": model_name, "request": request, "seed": seed, "method": name,
                                              "before": before}
                    method = create_method(name, original, **_method_options(name, [recorder], seed, None))
                    start = time.perf_counter()
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            unlearned = unlearn(original, dm, method=method)
                    except Exception as err:  # recorded, never hidden
                        record["error"] = f"{type(err).__name__}: {err}"
                    else:
                        o = method.outcome
                        record.update(
                            wall_s=time.perf_counter() - start, reached=o.reached, stopped_by=o.stopped_by, steps=o.steps,
                            backoffs=len(o.backoffs), after=_test_accuracy(unlearned, dm, forgotten),
                            forget_acc=predict(unlearned, dm.dataloader("forget")).accuracy,
                        )
                    records.append(record)
                    write_json_atomic(out, {"runs": records})
                    print(json.dumps({k: record.get(k) for k in ("model", "request", "seed", "method", "reached",
                                                                 "stopped_by", "steps", "error")}), flush=True)
    return records


def loosely_served(r: dict[str, Any]) -> bool:
    """The looser class-wise criterion: D_f accuracy <= 5%, retained test accuracy within 5 points."""
    return r["forget_acc"] <= 0.05 and r["after"]["test_retained"] >= r["before"]["test_retained"] - 0.05


def table(records: list[dict[str, Any]]) -> str:
    lines = []
    for model in sorted({r["model"] for r in records}):
        for request in REQUESTS:
            rows = [r for r in records if r["model"] == model and r["request"] == request]
            if not rows:
                continue
            classwise = REQUESTS[request][0] == "class"
            lines += ["", f"### digits, {model}, {request}", "",
                      "| method | runs | target reached | D_f ≤ 5% and retained test within 5 pts | retained test drop (pts) |",
                      "|---|---|---|---|---|"]
            for method in sorted({r["method"] for r in rows}):
                mine = [r for r in rows if r["method"] == method and "error" not in r]
                errors = len([r for r in rows if r["method"] == method]) - len(mine)
                reached = sum(bool(r["reached"]) for r in mine)
                loose = f"{sum(loosely_served(r) for r in mine)}/{len(mine)}" if classwise else "–"
                drops = [100 * (r["before"]["test_retained"] - r["after"]["test_retained"]) for r in mine]
                drop = f"{sum(drops) / len(drops):.1f} (max {max(drops):.1f})" if drops else "–"
                err = f" ({errors} failed)" if errors else ""
                lines.append(f"| {method} | {len(mine)}{err} | {reached}/{len(mine)} | {loose} | {drop} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=json.loads, default=["lenet5", "mlp"])
    parser.add_argument("--seeds", type=json.loads, default=[0, 1, 2])
    parser.add_argument("--methods", type=json.loads, default=None)
    parser.add_argument("--original_epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/serve_request_digits.json")
    parser.add_argument("--table_only", action="store_true")
    args = parser.parse_args()
    records = json.loads(Path(args.output).read_text())["runs"] if args.table_only else run(args)
    print(table(records))


if __name__ == "__main__":
    main()
