"""The benchmark: every registered method against the retrained gold standard (``make demo``).

For each seed the original classifier is trained once on the training split; then, for each
forgetting scenario, the retrained model (Retrain on D_r, the reference row) is trained and
every registered method is run with its DEFAULT arguments. Each unlearned model is scored
with :func:`lightning_unlearn.evaluation.evaluate` against the original and the reference
and probed for relearning. The report folder holds ``report.md`` (methods × metrics with
the gap to retrain and the runtime, mean ± std over seeds), ``results.json`` (every number)
and PNG plots (average gap per method, relearning curves). It is written to a temporary
folder and renamed into place, so an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.utilities.combined_loader import CombinedLoader

import torch
from lightning.pytorch import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import nn

from lightning_unlearn.api import create_method, train_classifier, unlearn
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import DatasetName
from lightning_unlearn.data.forget import ClassForget, ForgetSpec, RandomForget, SubclassForget
from lightning_unlearn.methods.registry import available_methods, get_method
from lightning_unlearn.models.networks import ModelName
from lightning_unlearn.relearning import relearn

Scenario = Literal["class", "subclass", "random"]
SCENARIO_TITLES = {
    "class": "class-wise forgetting (one class)",
    "subclass": "one class, 10% of its samples",
    "random": "random 10% of the training set",
}
REFERENCE = "Retrain"
# Metrics shown in the Markdown table (when the evaluation report has them), in this order.
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("acc_forget", "Acc D_f"),
    ("acc_retain", "Acc D_r"),
    ("acc_test", "Acc D_t"),
    ("acc_test_forget", "Acc D_tf"),
    ("acc_test_retain", "Acc D_tr"),
    ("mia_efficacy", "MIA"),
)
GAP_METRICS = ("acc_forget", "acc_retain", "acc_test", "mia_efficacy")
_GAP_KEYS = {k for k, _ in TABLE_METRICS} | {"loss_mia/mean", "unlearning_accuracy"}


def scenario_spec(scenario: Scenario, forget_class: int = 3, fraction: float = 0.1) -> ForgetSpec:
    """The forget specification of a named benchmark scenario."""
    if scenario == "class":
        return ClassForget(forget_class)
    if scenario == "subclass":
        return SubclassForget(forget_class, fraction=fraction)
    if scenario == "random":
        return RandomForget(fraction=fraction)
    raise ValueError(f"`scenarios` must contain only {list(SCENARIO_TITLES)}, got {scenario!r}.")


@dataclass
class RunRecord:
    """One method on one scenario and seed."""

    scenario: str
    seed: int
    method: str
    metrics: dict[str, float] = field(default_factory=dict)
    runtime_s: float = float("nan")
    relearning: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class BenchmarkResult:
    """Every run of a benchmark and the folder its report was written to."""

    output: Path
    records: list[RunRecord]
    wall_time_s: float
    config: dict[str, Any]

    def failed(self) -> list[RunRecord]:
        return [r for r in self.records if r.error is not None]

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.records))


# ------------------------------------------------------------------------------- helpers
def _flatten(payload: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict, keyed ``a/b`` (``None`` and non-numbers are left out)."""
    out: dict[str, float] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            out.update(_flatten(value, f"{prefix}{key}/" if isinstance(value, dict) else f"{prefix}{key}"))
    elif isinstance(payload, bool):
        out[prefix] = float(payload)
    elif isinstance(payload, (int, float)) and not isinstance(payload, bool):
        out[prefix.rstrip("/")] = float(payload)
    elif isinstance(payload, torch.Tensor) and payload.numel() == 1:
        out[prefix.rstrip("/")] = float(payload.item())
    return out


def _report_metrics(report: Any) -> dict[str, float]:
    """Scalar metrics of the unlearned model from an evaluation report (``acc_<split>``, ``mia_efficacy``,
    ``average_gap``, ``gaps/...``, ``loss_mia/...``, ...), under the names the table uses."""
    payload = report.to_dict()
    return _flatten({k: v for k, v in payload.items() if k not in ("models", "relearning", "splits", "forget_spec")})


def _evaluate(unlearned: nn.Module, dm: UnlearningDataModule, original: nn.Module, reference: nn.Module) -> dict[str, float]:
    from lightning_unlearn.evaluation import evaluate

    return _report_metrics(evaluate(unlearned, dm, original=original, reference=reference))


def _recorder_callbacks() -> list[Callback]:
    """Callbacks attached to the original training so that every method gets its inputs (PrototypeRecorder)."""
    try:
        from lightning_unlearn.callbacks import PrototypeRecorder  # type: ignore[attr-defined]
    except ImportError:
        return []
    return [PrototypeRecorder()]


def _method_inputs(method: str, recorders: list[Callback]) -> dict[str, Any]:
    """Extra constructor arguments a method needs beyond the model: Naive PS's ``recording``.

    Each run gets its own copy of the recording (Naive PS updates it in place after a request).
    """
    params = inspect.signature(get_method(method).__init__).parameters
    extra: dict[str, Any] = {}
    for recorder in recorders:
        recording = getattr(recorder, "recording", None)
        if "recording" in params and recording is not None:
            extra["recording"] = copy.deepcopy(recording)
    return extra


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(mean: float, std: float, seeds: int, scale: float = 100.0, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    text = f"{scale * mean:.{digits}f}"
    return f"{text} ± {scale * std:.{digits}f}" if seeds > 1 else text


# ------------------------------------------------------------------------------ the run
def run_benchmark(
    output: str = "benchmark_output",
    scenarios: tuple[Scenario, ...] = ("class", "subclass", "random"),
    methods: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] = (0,),
    dataset: DatasetName = "mnist5k",
    model: ModelName = "lenet5",
    original_epochs: int = 12,
    forget_class: int = 3,
    fraction: float = 0.1,
    relearn_epochs: int = 5,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    devices: int = 1,
    precision: str = "32-true",
    threads: int | None = None,
    stopping: bool = True,
    instance_reference: Literal["current", "initial"] = "current",
    overwrite: bool = True,
) -> BenchmarkResult:
    """Run every registered method (default arguments) on every scenario and write the report folder.

    Args:
        output: the report folder (written through a temporary folder, then renamed).
        scenarios: forgetting scenarios: ``class`` (every sample of ``forget_class``),
            ``subclass`` (``fraction`` of ``forget_class``) and ``random`` (``fraction`` of the training set).
        methods: registered method names to run (default: all but Retrain, which is the reference row).
        seeds: seeds of the data split, the original training and the methods (mean ± std over seeds).
        dataset: the dataset (``mnist5k`` and ``digits`` are bundled).
        model: the reference network trained as the original model.
        original_epochs: epochs of the original training and of the retrained reference.
        forget_class: the class forgotten in the ``class`` and ``subclass`` scenarios.
        fraction: the forgotten fraction of the ``subclass`` and ``random`` scenarios.
        relearn_epochs: epochs of the relearning probe (0 disables it).
        max_epochs: cap every method's epoch budget (for quick runs; default: each method's default).
        accelerator: Lightning accelerator of every training run.
        devices: devices per run (one process; multi-process runs go through ``lightning-unlearn unlearn``).
        precision: Lightning precision of the unlearning runs (e.g. ``bf16-mixed``).
        threads: intra-op CPU threads (``torch.set_num_threads``; default: torch's). On a shared or
            small CPU, 1 is often fastest for these small models.
        stopping: attach SPEC.md's stopping rule to every method that trains for epochs:
            class-wise, stop once the forget accuracy reaches 0 (:class:`ForgetAccuracyStop`);
            sub-class and random, stop once it is at most the accuracy on the held-out D_ref
            (:class:`ReferenceAccuracyStop`), the retrained model's behaviour on unseen data.
        instance_reference: the D_ref accuracy the instance-wise rule compares with: ``current``
            (SPEC.md: the model's accuracy at every check) or ``initial`` (the accuracy before
            unlearning; keeps forget-only methods from collapsing on random requests).
        overwrite: replace an existing report folder.

    Returns:
        The records of every run and the report folder.

    Raises:
        ValueError: for unknown methods or scenarios, bad epoch counts, ``devices`` other than 1,
            or an existing ``output`` when ``overwrite`` is false.
    """
    if not scenarios:
        raise ValueError("`scenarios` must name at least one of ['class', 'subclass', 'random'], got an empty list.")
    for scenario in scenarios:
        scenario_spec(scenario, forget_class, fraction)  # validates the name
    chosen = list(methods) if methods is not None else [m for m in available_methods() if m != REFERENCE]
    names = [get_method(m).method_name for m in chosen]  # unknown names raise, listing the registered ones
    names = [m for m in names if m != REFERENCE]
    if not seeds:
        raise ValueError("`seeds` must contain at least one seed, got an empty list.")
    if original_epochs < 1:
        raise ValueError(f"`original_epochs` must be >= 1, got {original_epochs}.")
    if relearn_epochs < 0:
        raise ValueError(f"`relearn_epochs` must be >= 0, got {relearn_epochs}.")
    if max_epochs is not None and max_epochs < 0:
        raise ValueError(f"`max_epochs` must be >= 0 or None, got {max_epochs}.")
    if devices != 1:
        raise ValueError(
            f"`devices` must be 1 for the benchmark (one process per run), got {devices}. Run a method on several"
            " devices with `lightning-unlearn unlearn --trainer.devices N --trainer.strategy ddp`."
        )
    if threads is not None and threads < 1:
        raise ValueError(f"`threads` must be >= 1 or None, got {threads}.")
    if instance_reference not in ("current", "initial"):
        raise ValueError(f"`instance_reference` must be 'current' or 'initial', got {instance_reference!r}.")
    out = Path(output)
    if out.exists() and not overwrite:
        raise ValueError(f"`output` {str(out)!r} exists; pass overwrite=True (--overwrite true) to replace it.")

    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in locals().items() if k in _CONFIG_KEYS}
    config["methods"] = names
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_all(out, scenarios, names, seeds, dataset, model, original_epochs, forget_class, fraction,
                        relearn_epochs, max_epochs, accelerator, devices, precision, instance_reference if stopping else None,
                        overwrite, config)
    finally:
        torch.set_num_threads(previous_threads)  # a library call must not change the caller's thread count


def _run_all(
    out: Path, scenarios: tuple[Scenario, ...], names: list[str], seeds: tuple[int, ...], dataset: DatasetName,
    model: ModelName, original_epochs: int, forget_class: int, fraction: float, relearn_epochs: int,
    max_epochs: int | None, accelerator: str, devices: int, precision: str, stopping: str | None, overwrite: bool,
    config: dict[str, Any],
) -> BenchmarkResult:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    console = Console()
    trainer_kwargs = {"accelerator": accelerator, "devices": devices}
    records: list[RunRecord] = []
    start = time.perf_counter()
    total = len(seeds) * (1 + len(scenarios) * (1 + len(names)))
    console.print(
        f"[bold]lightning-unlearn benchmark[/bold]: {model} on {dataset}, {len(names)} methods × {len(scenarios)}"
        f" scenarios × {len(seeds)} seed(s), reference: {REFERENCE}"
    )
    with warnings.catch_warnings(), Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        for message in _QUIET:  # Lightning's per-run notices would drown the progress display
            warnings.filterwarnings("ignore", message=message)
        task = progress.add_task("starting", total=total)
        for seed in seeds:
            progress.update(task, description=f"seed {seed}: training the original {model}")
            recorders = _recorder_callbacks()
            base_dm = _datamodule(dataset, ClassForget(forget_class), seed)
            original = train_classifier(
                base_dm, model, max_epochs=original_epochs, lr=1e-3, seed=seed, callbacks=recorders, **trainer_kwargs
            )
            progress.advance(task)
            for scenario in scenarios:
                dm = _datamodule(dataset, scenario_spec(scenario, forget_class, fraction), seed)
                progress.update(task, description=f"seed {seed} · {scenario}: {REFERENCE}")
                reference_method = create_method(REFERENCE, original, max_epochs=original_epochs, lr=1e-3, seed=seed)
                reference = unlearn(original, dm, method=reference_method, trainer_kwargs=dict(trainer_kwargs))
                records.append(_score(scenario, seed, REFERENCE, reference, reference_method.runtime_s, dm, original,
                                      reference, relearn_epochs))
                progress.advance(task)
                for name in names:
                    progress.update(task, description=f"seed {seed} · {scenario}: {name}")
                    records.append(_run_method(name, scenario, seed, original, reference, dm, recorders, max_epochs,
                                               {**trainer_kwargs, "precision": precision}, relearn_epochs, console,
                                               stopping))
                    progress.advance(task)
    wall = time.perf_counter() - start
    config["wall_time_s"] = round(wall, 2)
    result = BenchmarkResult(out, records, wall, config)
    _write_report(result, overwrite)
    console.print(_summary_table(result))
    console.print(f"Report written to [bold]{out}[/bold] in {wall:.0f} s ({len(result.failed())} failed runs).")
    return result


_QUIET = (".*LeafSpec.*", ".*module\\(s\\) in eval mode.*", ".*does not have many workers.*", ".*number of training batches.*")
_CONFIG_KEYS = ("scenarios", "seeds", "dataset", "model", "original_epochs", "forget_class", "fraction", "relearn_epochs",
                "max_epochs", "accelerator", "devices", "precision", "threads", "stopping", "instance_reference")


def _datamodule(dataset: DatasetName, spec: ForgetSpec, seed: int) -> UnlearningDataModule:
    dm = UnlearningDataModule(dataset, forget=spec, seed=seed, new_fraction=0.1, ref_fraction=0.05, batch_size=64)
    dm.setup()
    return dm


def _run_method(
    name: str,
    scenario: str,
    seed: int,
    original: nn.Module,
    reference: nn.Module,
    dm: UnlearningDataModule,
    recorders: list[Callback],
    max_epochs: int | None,
    trainer_kwargs: dict[str, Any],
    relearn_epochs: int,
    console: Console,
    stopping: str | None = "current",
) -> RunRecord:
    options: dict[str, Any] = {"seed": seed, **_method_inputs(name, recorders)}
    if max_epochs is not None:  # a cap: a method whose default budget is smaller (e.g. 0 for closed forms) keeps it
        default = inspect.signature(get_method(name).__init__).parameters["max_epochs"].default
        options["max_epochs"] = min(int(default), max_epochs)
    try:
        method = create_method(name, original, **options)
        callbacks = stopping_rules(scenario, stopping) if stopping and method.hparams.max_epochs > 0 else None
        if callbacks:
            trainer_kwargs = {**trainer_kwargs, **check_interval(method, dm)}
        unlearned = unlearn(original, dm, method=method, callbacks=callbacks, trainer_kwargs=dict(trainer_kwargs))
        return _score(scenario, seed, name, unlearned, method.runtime_s, dm, original, reference, relearn_epochs)
    except Exception as err:  # a failing method is reported as a failed row, never hidden
        console.print(f"[red]{name} failed on {scenario} (seed {seed}):[/red] {type(err).__name__}: {err}")
        logging.getLogger(__name__).debug(traceback.format_exc())
        return RunRecord(scenario, seed, name, error=f"{type(err).__name__}: {err}")


def stopping_rules(scenario: str, reference: Literal["current", "initial"] = "current") -> list[Callback]:
    """SPEC.md's stopping rule for a scenario: forget accuracy 0 (class-wise) or at most Acc(D_ref) (instance-wise).

    ``reference`` picks the D_ref accuracy of the instance-wise rule (see :class:`ReferenceAccuracyStop`).
    """
    from lightning_unlearn.callbacks import ForgetAccuracyStop, ReferenceAccuracyStop

    if scenario == "class":
        return [ForgetAccuracyStop(target=0.0, verbose=False)]
    return [ReferenceAccuracyStop(reference=reference, verbose=False)]


def check_interval(method: Any, dm: UnlearningDataModule, checks_per_pass: int = 8) -> dict[str, Any]:
    """Trainer arguments that evaluate the stopping rule about ``checks_per_pass`` times per pass over the data.

    Ascent-type methods can collapse within one epoch, so a rule checked only at epoch ends stops
    too late; a stop signalled mid-epoch ends training at that step.
    """
    loader = method.unlearning_dataloader(dm)  # what the method trains on: D_f, D_r, a layer, or both combined
    if isinstance(loader, CombinedLoader):
        iter(loader)  # a CombinedLoader knows its (mode-dependent) length only once iterated
    steps = len(loader)
    return {"val_check_interval": max(1, steps // checks_per_pass), "check_val_every_n_epoch": None}


def _score(
    scenario: str, seed: int, name: str, unlearned: nn.Module, runtime_s: float, dm: UnlearningDataModule,
    original: nn.Module, reference: nn.Module, relearn_epochs: int,
) -> RunRecord:
    unlearned = unlearned.float()
    metrics = _evaluate(unlearned, dm, original, reference)
    curve = relearn(unlearned, dm, epochs=relearn_epochs, seed=seed).forget_accuracy if relearn_epochs else []
    return RunRecord(scenario, seed, name, metrics, float(runtime_s), curve)


# ---------------------------------------------------------------------------- reporting
def aggregate(records: list[RunRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{scenario: {method: {metric: (mean, std), "runtime_s": (mean, std), "gap/<metric>": ...}}}`` over seeds.

    Gaps are ``|metric − metric of Retrain|`` per seed, then averaged.
    """
    refs = {(r.scenario, r.seed): r for r in records if r.method == REFERENCE and r.error is None}
    grouped: dict[str, dict[str, list[RunRecord]]] = {}
    for r in records:
        grouped.setdefault(r.scenario, {}).setdefault(r.method, []).append(r)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_method in grouped.items():
        for method, runs in by_method.items():
            ok = [r for r in runs if r.error is None]
            row: dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(ok)}
            if not ok:
                row["error"] = runs[0].error
            keys = sorted({k for r in ok for k in r.metrics})
            for key in keys:
                row[key] = _mean_std([r.metrics.get(key, float("nan")) for r in ok])
                if key not in _GAP_KEYS:
                    continue
                gaps = [abs(r.metrics[key] - refs[(scenario, r.seed)].metrics[key]) for r in ok
                        if key in r.metrics and (scenario, r.seed) in refs and key in refs[(scenario, r.seed)].metrics]
                if gaps:
                    row[f"gap/{key}"] = _mean_std(gaps)
            row["runtime_s"] = _mean_std([r.runtime_s for r in ok])
            curves = [r.relearning for r in ok if r.relearning]
            if curves:
                row["relearn_final"] = _mean_std([c[-1] for c in curves])
                row["relearning"] = [statistics.fmean(c[i] for c in curves) for i in range(min(map(len, curves)))]
            table.setdefault(scenario, {})[method] = row
    return table


def _markdown(result: BenchmarkResult, table: dict[str, dict[str, dict[str, Any]]]) -> str:
    cfg = result.config
    n = len(cfg["seeds"])
    budget = "" if cfg["max_epochs"] is None else f" (max_epochs={cfg['max_epochs']})"
    if not cfg.get("stopping", True):
        rule = "no stopping rule"
    else:
        rule = f"SPEC stopping rules (instance-wise against the {cfg.get('instance_reference', 'current')} D_ref accuracy)"
    lines = [
        "# lightning-unlearn benchmark",
        "",
        f"{cfg['model']} on {cfg['dataset']}, original and {REFERENCE} trained for {cfg['original_epochs']} epochs;"
        f" every method with its default arguments{budget}; {rule};"
        f" seeds {cfg['seeds']}; precision {cfg['precision']}; wall time {result.wall_time_s:.0f} s.",
        "",
        "Cells are `value (gap to Retrain)` in %; *avg gap* is the mean gap over Acc D_f, Acc D_r, Acc D_t and MIA"
        " (lower is better); runtime is the unlearning call alone; *relearn* is the forget accuracy after"
        f" {cfg['relearn_epochs']} relearning epochs on D_new." + (" Mean ± std over seeds." if n > 1 else ""),
    ]
    for scenario, rows in table.items():
        present = [(k, title) for k, title in TABLE_METRICS if any(k in row for row in rows.values())]
        header = ["method", *(t for _, t in present), "avg gap", "runtime (s)", "relearn"]
        lines += ["", f"## {scenario}: {SCENARIO_TITLES.get(scenario, scenario)}", "",
                  "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for method, row in sorted(rows.items(), key=lambda kv: (kv[0] != REFERENCE, kv[0].lower())):
            if "error" in row:
                lines.append(f"| {method} | failed (see below) |" + " |" * (len(header) - 2))
                continue
            cells = [f"**{method}** (reference)" if method == REFERENCE else method]
            for key, _ in present:
                value = _fmt(*row.get(key, (float("nan"), 0.0)), n)
                gap = row.get(f"gap/{key}")
                cells.append(value if gap is None or method == REFERENCE else f"{value} ({_fmt(*gap, n)})")
            cells.append(_fmt(*row.get("average_gap", (float("nan"), 0.0)), n) if method != REFERENCE else "0.0")
            cells.append(_fmt(*row["runtime_s"], n, scale=1.0, digits=2))
            cells.append(_fmt(*row.get("relearn_final", (float("nan"), 0.0)), n))
            lines.append("| " + " | ".join(cells) + " |")
    failed = result.failed()
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {r.method} on {r.scenario} (seed {r.seed}): {r.error}" for r in failed]
    return "\n".join(lines) + "\n"


def _plots(folder: Path, table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for scenario, rows in table.items():
        methods = sorted((m for m, r in rows.items() if m != REFERENCE and "average_gap" in r), key=lambda m: rows[m]["average_gap"][0])
        if methods:
            fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(methods) + 2), 4))
            means = [100 * rows[m]["average_gap"][0] for m in methods]
            stds = [100 * rows[m]["average_gap"][1] for m in methods]
            ax.bar(methods, means, yerr=stds, color="tab:blue")
            ax.set_ylabel("average gap to Retrain (%)")
            ax.set_title(f"{scenario}: {SCENARIO_TITLES.get(scenario, scenario)}")
            ax.tick_params(axis="x", rotation=60)
            fig.tight_layout()
            fig.savefig(folder / f"gap_{scenario}.png", dpi=110)
            plt.close(fig)
            written.append(f"gap_{scenario}.png")
        curves = {m: r["relearning"] for m, r in rows.items() if r.get("relearning")}
        if curves:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            palette = plt.get_cmap("tab20")
            for i, (method, curve) in enumerate(sorted(curves.items())):
                style = ({"color": "black", "linewidth": 2.5} if method == REFERENCE
                         else {"color": palette(i % 20), "linestyle": ("-", "--", ":")[i % 3]})
                ax.plot(range(len(curve)), [100 * v for v in curve], marker="o", markersize=3, label=method, **style)
            ax.set_xlabel("relearning epoch (fine-tuning on D_new, retained classes)")
            ax.set_ylabel("forget accuracy (%)")
            ax.set_title(f"relearning: {scenario}")
            ax.legend(fontsize=7, ncol=2)
            fig.tight_layout()
            fig.savefig(folder / f"relearn_{scenario}.png", dpi=110)
            plt.close(fig)
            written.append(f"relearn_{scenario}.png")
    return written


def _write_report(result: BenchmarkResult, overwrite: bool) -> None:
    """Write report.md, results.json and the plots to a temporary folder, then rename it to ``result.output``."""
    out = result.output
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        table = aggregate(result.records)
        plots = _plots(tmp, table)
        (tmp / "report.md").write_text(_markdown(result, table) + "".join(f"\n![{p}]({p})\n" for p in plots))
        payload = {
            "config": result.config,
            "reference": REFERENCE,
            "summary": table,
            "runs": [r.__dict__ for r in result.records],
        }
        (tmp / "results.json").write_text(json.dumps(payload, indent=1, default=_json_default))
        publish_dir(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (Path, torch.device)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def publish_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished folder ``tmp`` to ``out`` (one rename); an existing ``out`` is replaced only when ``overwrite``.

    The temporary folder and its files get the permissions the user's umask gives new files.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for path in tmp.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"`output` {str(out)!r} exists; pass overwrite=True (--overwrite true) to replace it.")
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, trash / out.name)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _summary_table(result: BenchmarkResult) -> Table:
    table = aggregate(result.records)
    n = len(result.config["seeds"])
    rich_table = Table(title="average gap to Retrain (%) · runtime (s)")
    rich_table.add_column("method", no_wrap=True)
    for scenario in table:
        rich_table.add_column(f"{scenario} gap")
        rich_table.add_column(f"{scenario} s")
    for method in result.methods():
        cells = [method]
        for scenario, rows in table.items():
            row = rows.get(method, {})
            if "error" in row:
                cells += ["failed", "–"]
            else:
                gap = "0.0" if method == REFERENCE else _fmt(*row.get("average_gap", (float("nan"), 0.0)), n)
                cells += [gap, _fmt(*row.get("runtime_s", (float("nan"), 0.0)), n, scale=1.0, digits=2)]
        rich_table.add_row(*cells)
    return rich_table
