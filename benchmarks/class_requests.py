"""Class-wise requests served or not, per method and option set: the quick screen behind a default or a hint.

For each original seed in ``--seeds`` (the seed also trains the original) and each class in ``--classes``, every
method in ``--methods`` serves the class-wise request on MNIST-5k under the default request (target, guard, step
budget), with ``--options`` on top of its defaults (e.g. ``'{"freeze_batchnorm": true}'``) and its learning rate
times ``--lr_scale``. One JSON line per run (target reached, how the run ended, steps, guard events, accuracies
after, wall time) is appended to ``--output``; a summary per method goes to stdout. No Retrain reference is trained:
for the gap to Retrain use ``serve_request.py``.

    python benchmarks/class_requests.py --model allcnn --methods '["SU"]' --seeds '[0,1,2]' \\
        --options '{"freeze_batchnorm": true}' --lr_scale 0.1 --output benchmarks/results/X.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import time
import warnings
from pathlib import Path

import torch

from lightning_unlearn import create_method, train_classifier, unlearn
from lightning_unlearn.benchmark_runs import ReplicateSeeds, RunSettings, _datamodule, _method_options
from lightning_unlearn.callbacks import PrototypeRecorder
from lightning_unlearn.data.forget import ClassForget
from lightning_unlearn.request import UnlearningTargetWarning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="allcnn")
    parser.add_argument("--methods", type=json.loads, default=["SU"])
    parser.add_argument("--classes", type=json.loads, default=list(range(10)))
    parser.add_argument("--seeds", type=json.loads, default=[0])
    parser.add_argument("--options", type=json.loads, default={})
    parser.add_argument("--lr_scale", type=float, default=1.0)
    parser.add_argument("--original_epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = RunSettings("mnist5k", args.model, args.original_epochs, 0, 0.1, 0, None, "cpu", 1, "32-true", True)
    served: dict[str, list[bool]] = collections.defaultdict(list)
    with Path(args.output).open("a") as out:
        for seed in args.seeds:
            seeds = ReplicateSeeds(seed, seed, seed, seed)
            recorder = PrototypeRecorder()  # NaivePS's recording, as in serve_request.py
            original = train_classifier(_datamodule(settings, ClassForget(0), seeds), args.model,
                                        max_epochs=args.original_epochs, seed=seed, callbacks=[recorder])
            for klass in args.classes:
                dm = _datamodule(settings, ClassForget(klass), seeds)
                for name in args.methods:
                    options = dict(args.options)
                    if args.lr_scale != 1.0:
                        options["lr"] = create_method(name, original, seed=seed).hparams.lr * args.lr_scale
                    method = create_method(name, original, **_method_options(name, [recorder], seed, None), **options)
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UnlearningTargetWarning)
                        unlearn(original, dm, method=method)
                    outcome = method.outcome
                    record = {
                        "model": args.model, "method": name, "class": klass, "seed": seed, "options": options,
                        "reached": outcome.reached, "stopped_by": outcome.stopped_by, "steps": outcome.steps,
                        "guard_ok": not outcome.guard_events, "backoffs": len(outcome.backoffs), "after": outcome.after,
                        "wall_s": time.perf_counter() - start,
                    }
                    served[name].append(bool(outcome.reached))
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    print(json.dumps(record), flush=True)
    for name, runs in served.items():
        print(f"{name} {args.options} lr x{args.lr_scale}: target reached in {sum(runs)} of {len(runs)} runs")


if __name__ == "__main__":
    main()
