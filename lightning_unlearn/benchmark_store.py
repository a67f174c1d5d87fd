"""The benchmark's output folder: one file per finished run, results.json rebuilt from them, resuming.

``runs/<scenario>-seed<seed>-<method>.json`` holds one finished run, written whole
(:func:`~lightning_unlearn.atomic.write_json_atomic`); after each, ``results.json``
(the configuration, every run and the summary) is rebuilt from ``runs/`` under an exclusive
lock, so worker processes can finish runs at the same time. A folder is resumed only by a
benchmark of the same configuration (the package's code included).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning_unlearn.benchmark_report import UNITS, aggregate
from lightning_unlearn.benchmark_runs import ORIGINAL, REFERENCE, RunRecord
from lightning_unlearn.atomic import publish_dir, write_json_atomic  # noqa: F401  (publish_dir: re-exported)

RESULTS_FILE = "results.json"
RUNS_DIR = "runs"
BANKS_DIR = "banks"  # the per-example scores' model banks (``per_example_bank``), one folder per scenario and seed
_LOCK_FILE = ".lock"


class BenchmarkArgumentError(ValueError):
    """An argument the benchmark cannot run with (the command line reports it as a usage error)."""


def code_fingerprint() -> str:
    """A hash of the package's Python sources: a folder written by other code is not resumed."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def prepare_output(out: Path, config: dict[str, Any], overwrite: bool) -> dict[tuple[str, int, str], RunRecord]:
    """Make ``out`` ready; return the runs already finished there by a benchmark of the same configuration."""
    if out.exists() and not out.is_dir():
        raise BenchmarkArgumentError(f"`output` {str(out)!r} is a file, not a folder.")
    stored = _stored_config(out)
    written = _written_files(out) if out.exists() else []
    if stored != config and written and not overwrite:
        differing = sorted(k for k in {*config, *(stored or {})} if (stored or {}).get(k) != config.get(k)) if stored else []
        what = f"a benchmark of another configuration (differs in: {', '.join(differing)})" if stored else "benchmark files"
        raise BenchmarkArgumentError(
            f"`output` {str(out)!r} holds {what}; pass `--overwrite true` (overwrite=True) to start afresh"
            " there, or choose another `--output`."
        )
    for path in written if overwrite or stored != config else _temporaries(out):
        shutil.rmtree(path) if path.is_dir() else path.unlink()  # only what a benchmark writes; the rest stays
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    records = rebuild_results(out, config)
    return {r.key: r for r in records}


def _stored_config(out: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads((out / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return payload.get("config") if isinstance(payload, dict) else None


def _written_files(out: Path) -> list[Path]:
    """The files and folders in ``out`` that a benchmark writes (``runs/`` whole when it holds nothing else)."""
    patterns = (RESULTS_FILE, "report.md", "gap_*.png", "relearn_*.png", BANKS_DIR)
    found = [p for pattern in patterns for p in out.glob(pattern)] + _temporaries(out)
    runs = out / RUNS_DIR
    if runs.is_dir():
        ours = {*runs.glob("*.json"), *runs.glob(_LOCK_FILE), *_temporaries(out, runs_only=True)}
        found += [runs] if set(runs.iterdir()) <= ours else sorted(ours)
    return found


def _temporaries(out: Path, runs_only: bool = False) -> list[Path]:
    """Temporary files a killed benchmark may have left (the atomic writers' and the report's staging folder)."""
    inside = list((out / RUNS_DIR).glob(".*.json.*"))
    return inside if runs_only else [*out.glob(f".{RESULTS_FILE}.*"), *out.glob(".report.*"), *inside]


def _run_path(out: Path, record: RunRecord) -> Path:
    method = re.sub(r"[^\w+.-]", "_", record.method)
    return out / RUNS_DIR / f"{record.scenario}-seed{record.seed}-{method}.json"


def _jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (strict JSON), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder (POSIX ``fcntl``): one writer of results.json at a time."""
    import fcntl

    with open(out / RUNS_DIR / _LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_run(out: Path, record: RunRecord, config: Mapping[str, Any]) -> None:
    """Store one finished run and rebuild results.json (safe from several processes)."""
    _write_json(_run_path(out, record), record.to_dict())
    rebuild_results(out, config)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Strict JSON written whole, readable as the user's umask allows (the temporary file it comes from is private)."""
    write_json_atomic(path, _jsonable(payload))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def rebuild_results(out: Path, config: Mapping[str, Any]) -> list[RunRecord]:
    """Rewrite results.json (configuration, every stored run, the summary) from ``runs/``; return the runs."""
    order = {k: {v: i for i, v in enumerate(values)} for k, values in
             (("scenario", config["scenarios"]), ("seed", config["seeds"]), ("method", [REFERENCE, ORIGINAL, *config["methods"]]))}
    with _locked(out):
        records = [RunRecord(**json.loads(p.read_text())) for p in (out / RUNS_DIR).glob("*.json")]
        records.sort(key=lambda r: (order["seed"].get(r.seed, 0), order["scenario"].get(r.scenario, 0), order["method"].get(r.method, 0)))
        payload = {"config": dict(config), "reference": REFERENCE, "units": UNITS,
                   "runs": [r.to_dict() for r in records], "summary": aggregate(records)}
        _write_json(out / RESULTS_FILE, payload)
    return records


def plan_runs(config: Mapping[str, Any], done: Mapping[tuple[str, int, str], RunRecord]) -> dict[int, dict[str, list[str]]]:
    """Replicate seed → scenario → the runs not finished yet (seeds and scenarios with none are left out)."""
    plan: dict[int, dict[str, list[str]]] = {}
    for seed in config["seeds"]:
        for scenario in config["scenarios"]:
            pending = [m for m in (REFERENCE, ORIGINAL, *config["methods"]) if (scenario, seed, m) not in done]
            if pending:
                plan.setdefault(seed, {})[scenario] = pending
    return plan


RUN_FOLDER_FILES = ("model.pt", "manifest.json", "config.yaml")
"""What a run folder written by ``lightning-unlearn unlearn`` holds (what an overwrite may replace)."""


def check_output(out: Path, overwrite: bool, inputs: dict[str, Any]) -> None:
    """Refuse an ``output`` whose replacement would destroy anything but an earlier run folder.

    Args:
        out: the run folder to write.
        overwrite: whether an existing run folder may be replaced.
        inputs: ``{argument: path}`` of the files the run reads (checkpoint, recording, manifest, ...).

    Raises:
        ValueError: ``out`` is an existing file, an existing folder that is not a run folder, or
            is (or holds) one of the inputs.
        FileExistsError: ``out`` is a run folder and ``overwrite`` is false.
    """
    target = out.resolve()
    for argument, path in inputs.items():
        if path is None:
            continue
        source = Path(str(path)).resolve()
        if source == target or target in source.parents:
            raise ValueError(
                f"`--output` {str(out)!r} is or holds the input `{argument}` {str(path)!r}: writing the run there would"
                " replace it. Choose another folder."
            )
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise ValueError(f"`--output` {str(out)!r} is an existing file, not a run folder: choose a folder name.")
    entries = {p.name for p in out.iterdir()}
    if entries and not set(RUN_FOLDER_FILES) <= entries:
        raise ValueError(
            f"`--output` {str(out)!r} is a folder that holds other files, not a run folder ({', '.join(RUN_FOLDER_FILES)}):"
            " an overwrite would delete them. Choose a new folder."
        )
    if not overwrite:
        raise FileExistsError(f"`--output` {str(out)!r} exists; pass `--overwrite true` to replace it.")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` for the whole run: a second run into the same folder fails at
    once instead of after its training (POSIX ``flock``; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(f"Another run is writing `--output` {str(out)!r} (lock {str(lock_path)!r}).") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # no file left behind (a run starting just now fails or locks anew)
            fcntl.flock(handle, fcntl.LOCK_UN)


