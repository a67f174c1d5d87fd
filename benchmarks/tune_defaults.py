"""How the methods' default learning rates were chosen: each candidate, run under the default request.

For every (model, request, method, candidate) cell this runs the method with the default target, guard
and step budget on MNIST-5k and records whether the request was served (target reached, the
returned state within the guard), the steps taken, and the accuracy on the *test* split (which the
request's checks never see) of the retained and the forgotten classes, before and after.

A candidate is the method's constructor options (e.g. ``{"lr": 1e-3}``); ``{}`` is its default.

    python benchmarks/tune_defaults.py --models '["lenet5"]' --methods '["GradientAscent"]' \\
        --candidates '{"GradientAscent": [{}, {"lr": 3e-4}]}' --workers 2

Originals are trained once per (model, seed) and cached under ``--cache`` (weights only); one JSON
record per run is appended to ``--output`` (resumable: a finished run is not run again).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import warnings
from pathlib import Path
from typing import Any

import torch

DEFAULT_CELLS = [
    ["lenet5", "class", 1, 0], ["lenet5", "class", 5, 1], ["lenet5", "class", 8, 2],
    ["lenet5", "random", 3, 1], ["lenet5", "random", 3, 2], ["lenet5", "subclass", 5, 1],
    ["allcnn", "class", 2, 0], ["allcnn", "class", 6, 1], ["allcnn", "random", 3, 1],
]


def _dm(scenario: str, klass: int, seed: int) -> Any:
    from lightning_unlearn.benchmark_runs import _datamodule, ReplicateSeeds, RunSettings, scenario_spec

    settings = RunSettings("mnist5k", "lenet5", 12, 0, 0.1, 0, None, "cpu", 1, "32-true", True)
    return _datamodule(settings, scenario_spec(scenario, klass, 0.1), ReplicateSeeds(seed, seed, seed, seed))  # type: ignore[arg-type]


def original(cache: Path, model: str, seed: int) -> Any:
    """The original classifier of (model, seed): trained on the full training split, cached (weights only)."""
    from lightning_unlearn import train_classifier
    from lightning_unlearn.models.classifier import Classifier

    path = cache / f"{model}_seed{seed}.pt"
    dm = _dm("class", 0, seed)  # the training split depends on the seed only, not on the request
    if path.exists():
        classifier = Classifier(model, dm.num_classes, dm.input_shape)
        classifier.load_state_dict(torch.load(path, weights_only=True))
        return classifier
    classifier = train_classifier(dm, model, max_epochs=12, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(classifier.state_dict(), path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return classifier


def _accuracy(model: torch.nn.Module, dm: Any, forget_classes: set[int]) -> dict[str, float]:
    from lightning_unlearn.passes import class_counts

    correct, total = class_counts(model, dm.dataloader("test"), dm.num_classes, None)
    mask = torch.tensor([c in forget_classes for c in range(dm.num_classes)])
    out = {"test_retained": float(correct[~mask].sum() / total[~mask].sum())} if (~mask).any() else {}
    if mask.any():
        out["test_forgotten"] = float(correct[mask].sum() / total[mask].sum().clamp(min=1))
    return out


def run_one(job: tuple[str, list[Any], str, dict[str, Any]]) -> dict[str, Any]:
    cache, (model, scenario, klass, seed), method, options = job
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from lightning_unlearn import create_method, unlearn

    dm = _dm(scenario, klass, seed)
    net = original(Path(cache), model, seed)
    forget_classes = {klass} if scenario == "class" else set()
    record: dict[str, Any] = {"model": model, "scenario": scenario, "class": klass, "seed": seed, "method": method,
                              "options": options, "before": _accuracy(net.model, dm, forget_classes)}
    start = time.perf_counter()
    try:
        m = create_method(method, net, seed=seed, **options)
        unlearned = unlearn(net, dm, method=m)
    except Exception as err:  # recorded, never hidden
        record["error"] = f"{type(err).__name__}: {err}"
        return record
    outcome = m.outcome
    record.update(
        wall_s=time.perf_counter() - start, reached=outcome.reached, steps=outcome.steps, stopped_by=outcome.stopped_by,
        restored=outcome.restored, returned_step=outcome.returned_step, guard_events=len(outcome.guard_events),
        check_share=outcome.check_time_s / max(outcome.runtime_s, 1e-9), outcome_after=outcome.after,
        after=_accuracy(unlearned, dm, forget_classes),
    )
    record["test_drop"] = record["before"].get("test_retained", 0.0) - record["after"].get("test_retained", 0.0)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=json.loads, default=DEFAULT_CELLS, help="[[model, scenario, class, seed], ...]")
    parser.add_argument("--models", type=json.loads, default=None, help="keep only the cells of these models")
    parser.add_argument("--methods", type=json.loads, required=True)
    parser.add_argument("--candidates", type=json.loads, default={}, help="{method: [options, ...]}; default [{}]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default="benchmarks/.originals")
    parser.add_argument("--output", default="benchmarks/results/tune_defaults.jsonl")
    args = parser.parse_args()
    cells = [c for c in args.cells if args.models is None or c[0] in args.models]
    out = Path(args.output)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add(json.dumps([r["model"], r["scenario"], r["class"], r["seed"], r["method"], r["options"]], sort_keys=True))
    # Originals first (one per model and seed), so that workers only read the cache.
    with mp.get_context("spawn").Pool(args.workers) as pool:
        pool.starmap(_warm, sorted({(args.cache, c[0], c[3]) for c in cells}))
        jobs = [(args.cache, c, m, o) for m in args.methods for o in args.candidates.get(m, [{}]) for c in cells
                if json.dumps([*c, m, o], sort_keys=True) not in done]
        for record in pool.imap_unordered(run_one, jobs):
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps({k: record.get(k) for k in ("model", "scenario", "class", "seed", "method", "options", "reached",
                                                        "stopped_by", "steps", "test_drop", "error")}), flush=True)


def _warm(cache: str, model: str, seed: int) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    original(Path(cache), model, seed)


if __name__ == "__main__":
    main()
