"""Does every method serve the request with its defaults? And what do the checks cost?

For each model, every method runs with its default arguments (target, guard and step budget on)
on MNIST-5k:

* class-wise, one run per class in ``--classes`` and original seed in ``--class_seeds`` (default: seed 0);
* sub-class (10% of ``--subclass_class``) and random 10%, one run per seed in ``--seeds``.

Per method and scenario it reports the share of runs that reached their target, the share whose
checks never violated the utility guard, the average gap to Retrain (mean ± 95% t-interval;
Acc D_f, D_r, D_t and MIA efficacy) next to the Original row, and how many runs ended closer to Retrain
than the untouched original, or more than 2 points further from it. ``--accuracy_target`` serves
instance-wise requests by the target of earlier versions (the forget accuracy alone), for comparison. With ``--wall_clock`` it reruns each
run of the first class (on the first of ``--class_seeds``) with the same number of steps and no checks (``target=None, guard=None``)
and reports the checks' share of the wall time, and the reported runtime against the measured wall.

    python benchmarks/serve_request.py --models '[lenet5]' --classes '[0,1,2]' --seeds '[0,1,2]'

Results go to ``--output`` (JSON, one record per run, written after every run) and a Markdown table
on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from lightning_unlearn import available_methods, create_method, get_method, train_classifier, unlearn
from lightning_unlearn.benchmark_report import summarize
from lightning_unlearn.benchmark_runs import _datamodule, _method_options, RunSettings, ReplicateSeeds, scenario_spec
from lightning_unlearn.callbacks import PrototypeRecorder
from lightning_unlearn.data.datamodule import write_json_atomic
from lightning_unlearn.data.forget import ClassForget
from lightning_unlearn.evaluation import evaluate
from lightning_unlearn.request import UnlearningTargetWarning, derive_target

GAP_KEYS = ("acc_forget", "acc_retain", "acc_test", "mia_efficacy")


def mean_ci(values: list[float]) -> str:
    """Mean ± half-width of the Student t 95% interval, in points."""
    s = summarize(values)
    if s["mean"] is None:
        return "–"
    return f"{100 * s['mean']:.1f}" + ("" if s["ci95"] is None else f" ± {100 * s['ci95']:.1f}")


def scores(model: torch.nn.Module, dm: Any, seed: int) -> dict[str, float]:
    report = evaluate(model.float(), dm, seed=seed, loss_mia=False).to_dict()
    return {k: float(report[k]) for k in GAP_KEYS if report.get(k) is not None}


def gap(a: dict[str, float], b: dict[str, float]) -> float:
    keys = [k for k in GAP_KEYS if k in a and k in b]
    return sum(abs(a[k] - b[k]) for k in keys) / len(keys)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = Path(args.output)
    records: list[dict[str, Any]] = json.loads(out.read_text())["runs"] if out.exists() and not args.overwrite else []
    done = {(r["model"], r["scenario"], r["request"], r["method"]) for r in records}
    methods = args.methods or [m for m in available_methods() if m != "Retrain"]
    for model_name in args.models:
        settings = RunSettings("mnist5k", model_name, args.original_epochs, 0, 0.1, 0, None, "cpu", 1, "32-true", True)
        requests = [("class", c, seed) for seed in args.class_seeds for c in args.classes]
        requests += [(s, args.subclass_class, seed) for s in ("subclass", "random") for seed in args.seeds]
        originals: dict[int, tuple] = {}
        for scenario, klass, seed in requests:
            key = (f"{klass}" if seed == 0 else f"{klass} seed {seed}") if scenario == "class" else f"seed {seed}"
            pending = [m for m in ["Original", *methods] if (model_name, scenario, key, m) not in done]
            if not pending:
                continue
            seeds = ReplicateSeeds(seed, seed, seed, seed)
            if seed not in originals:
                recorder = PrototypeRecorder()
                base = _datamodule(settings, ClassForget(0), seeds)
                original = train_classifier(base, model_name, max_epochs=args.original_epochs, seed=seed, callbacks=[recorder])
                originals[seed] = (original, recorder)
            original, recorder = originals[seed]
            dm = _datamodule(settings, scenario_spec(scenario, klass, 0.1), seeds)  # type: ignore[arg-type]
            reference = unlearn(original, dm, "Retrain", max_epochs=args.original_epochs, lr=1e-3, seed=seed, target=None, guard=None)
            ref_scores = scores(reference, dm, seed)
            for name in pending:
                record: dict[str, Any] = {"model": model_name, "scenario": scenario, "request": key, "method": name}
                if name == "Original":
                    record.update(reached=None, guard_ok=True, gap=gap(scores(original, dm, seed), ref_scores))
                else:
                    options = _method_options(name, [recorder], seed, None)
                    method = create_method(name, original, **options)
                    start = time.perf_counter()
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", UnlearningTargetWarning)
                            unlearned = unlearn(original, dm, method=method)
                    except Exception as err:  # reported, never hidden
                        record.update(error=f"{type(err).__name__}: {err}")
                        records.append(record)
                        continue
                    wall = time.perf_counter() - start
                    outcome = method.outcome
                    record.update(
                        reached=outcome.reached, guard_ok=not outcome.guard_events, steps=outcome.steps,
                        stopped_by=outcome.stopped_by, runtime_s=outcome.runtime_s, check_time_s=outcome.check_time_s,
                        wall_s=wall, gap=gap(scores(unlearned, dm, seed), ref_scores), after=outcome.after,
                    )
                    if args.wall_clock and scenario == "class" and (klass, seed) == (args.classes[0], args.class_seeds[0]) and outcome.steps > 0:
                        bare = create_method(name, original, **{**options, "target": None, "guard": None, "max_steps": outcome.steps})
                        start = time.perf_counter()
                        unlearn(original, dm, method=bare)
                        record["wall_no_checks_s"] = time.perf_counter() - start
                records.append(record)
                write_json_atomic(out, {"runs": records})
                print(json.dumps({k: v for k, v in record.items() if k != "after"}), flush=True)
    return records


def use_accuracy_target() -> None:
    """Serve instance-wise requests by the target of earlier versions: the forget accuracy within two binomial
    standard errors of D_ref's before unlearning, without the membership statistic."""
    from lightning_unlearn.request import callback

    def accuracy_only(option: Any, loaders: Any, before: dict[str, float], forget_weights: Any = None) -> Any:
        if option == "auto" and forget_weights is not None:
            option = before["ref"]
        return derive_target(option, loaders, before, forget_weights)

    callback.derive_target = accuracy_only  # type: ignore[assignment]


def known_limit(method: str) -> str:
    """What the method declares it cannot do (closed form, or a measured limit its warning names)."""
    cls = get_method(method)
    if not cls.iterative:
        return "closed form"
    return "yes (see its warning)" if cls.limitation else "–"


def table(records: list[dict[str, Any]]) -> str:
    lines = []
    for model in sorted({r["model"] for r in records}):
        for scenario in ("class", "subclass", "random"):
            rows = [r for r in records if r["model"] == model and r["scenario"] == scenario]
            if not rows:
                continue
            original = [r["gap"] for r in rows if r["method"] == "Original"]
            lines += ["", f"### {model}, {scenario}", "",
                      "| method | runs | target reached | guard never violated | avg gap (pp) | gap < Original's |"
                      " gap > Original's + 2 pp | checks / wall | runtime / wall | known limit |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            by_request = {r["request"]: r["gap"] for r in rows if r["method"] == "Original"}
            for method in sorted({r["method"] for r in rows}, key=lambda m: (m != "Original", m)):
                mine = [r for r in rows if r["method"] == method and "error" not in r]
                errors = sum("error" in r for r in rows if r["method"] == method)
                if method == "Original":
                    lines.append(f"| Original | {len(mine)} | – | – | {mean_ci(original)} | – | – | – | – | – |")
                    continue
                reached = sum(bool(r["reached"]) for r in mine)
                guard = sum(bool(r["guard_ok"]) for r in mine)
                better = sum(r["gap"] < by_request.get(r["request"], math.inf) for r in mine)
                worse = sum(r["gap"] > by_request.get(r["request"], math.inf) + 0.02 for r in mine)
                check_share = [r["check_time_s"] / r["wall_s"] for r in mine if r.get("wall_s")]
                honest = [r["runtime_s"] / r["wall_s"] for r in mine if r.get("wall_s")]
                share = f"{100 * statistics.fmean(check_share):.0f}%" if check_share else "–"
                ratio = f"{statistics.fmean(honest):.2f}" if honest else "–"
                err = f" ({errors} failed)" if errors else ""
                lines.append(f"| {method} | {len(mine)}{err} | {reached}/{len(mine)} | {guard}/{len(mine)} |"
                             f" {mean_ci([r['gap'] for r in mine])} | {better}/{len(mine)} | {worse}/{len(mine)} | {share} | {ratio} | {known_limit(method)} |")
        timed = [r for r in records if r["model"] == model and r.get("wall_no_checks_s")]
        if timed:
            lines += ["", f"### {model}: wall time with checks vs the same steps without (class {timed[0]['request']})", "",
                      "| method | steps | with checks (s) | without (s) | ratio |", "|---|---|---|---|---|"]
            for r in timed:
                lines.append(f"| {r['method']} | {r['steps']} | {r['wall_s']:.2f} | {r['wall_no_checks_s']:.2f} |"
                             f" {r['wall_s'] / r['wall_no_checks_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=json.loads, default=["lenet5", "allcnn"])
    parser.add_argument("--classes", type=json.loads, default=list(range(10)))
    parser.add_argument("--seeds", type=json.loads, default=[0, 1, 2, 3, 4])
    parser.add_argument("--class_seeds", type=json.loads, default=[0], help="original seeds of the class-wise requests")
    parser.add_argument("--subclass_class", type=int, default=3)
    parser.add_argument("--methods", type=json.loads, default=None)
    parser.add_argument("--original_epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wall_clock", action="store_true")
    parser.add_argument("--output", default="benchmarks/results/serve_request.json")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--table_only", action="store_true")
    parser.add_argument("--accuracy_target", action="store_true",
                        help="instance-wise, the target of earlier versions: the forget accuracy alone (for comparison)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.accuracy_target:
        use_accuracy_target()
    records = json.loads(Path(args.output).read_text())["runs"] if args.table_only else run(args)
    print(table(records))


if __name__ == "__main__":
    main()
