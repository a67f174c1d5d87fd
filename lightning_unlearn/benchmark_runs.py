"""The runs of the benchmark: one replicate seed, every scenario, every method, scored the same way.

:func:`run_replicate` trains the original classifier of one replicate, then for each scenario
the retrained reference (Retrain on D_r) and every pending method, scores each model with
:func:`lightning_unlearn.evaluation.evaluate` against the original and the reference, probes
relearning, and hands each finished :class:`RunRecord` to a callback (which stores it). The
original model itself is scored the same way, as the row that shows what doing nothing scores.
Every piece of randomness is seeded from :class:`ReplicateSeeds`, so a run's numbers do not
depend on which other runs the same process did before it (resuming and worker processes rely
on this).

With ``per_example_bank`` K > 0, every row also gets per-example scores (``per_example/...`` metrics:
U-LiRA AUC and TPR at 1% FPR on D_f, the NeurIPS 2023 score, the median KLOM on D_f) from a
:class:`~lightning_unlearn.model_bank.ModelBank` of K models per kind for the scenario and seed,
scored as :func:`lightning_unlearn.forgetting_audit.audit` scores them (the Retrain row: one half of
the retrained models against the other; the original row: the K originals).
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, seed_everything
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch import nn

from lightning_unlearn.api import create_method, train_classifier, unlearn
from lightning_unlearn.data.datamodule import DEFAULT_REF_FRACTION, UnlearningDataModule
from lightning_unlearn.data.datasets import DatasetName
from lightning_unlearn.data.forget import ClassForget, ForgetSpec, RandomForget, SubclassForget
from lightning_unlearn.methods.registry import get_method
from lightning_unlearn.models.networks import ModelName
from lightning_unlearn.relearning import relearn
from lightning_unlearn.request import UnlearningTargetWarning

Scenario = Literal["class", "subclass", "random"]
SCENARIO_TITLES = {
    "class": "class-wise forgetting (one class)",
    "subclass": "one class, 10% of its samples",
    "random": "random 10% of the training set",
}
REFERENCE = "Retrain"
ORIGINAL = "Original"
ORIGINAL_LABEL = "Original (no unlearning)"


def scenario_spec(scenario: Scenario, forget_class: int = 3, fraction: float = 0.1) -> ForgetSpec:
    """The forget specification of a named benchmark scenario.

    Raises:
        ValueError: for a name other than ``class``, ``subclass`` or ``random``.
    """
    if scenario == "class":
        return ClassForget(forget_class)
    if scenario == "subclass":
        return SubclassForget(forget_class, fraction=fraction)
    if scenario == "random":
        return RandomForget(fraction=fraction)
    raise ValueError(f"`scenarios` must contain only {list(SCENARIO_TITLES)}, got {scenario!r}.")


def stopping_rules(scenario: str, reference: Literal["current", "initial"] = "current") -> list[Callback]:
    """The scenario's stopping rule: forget accuracy 0 (class-wise) or at most Acc(D_ref) (instance-wise).

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
    loader = dm.training_loader(method.training_data)  # what the method trains on: D_f, D_r, a layer, or both combined
    if isinstance(loader, CombinedLoader):
        iter(loader)  # a CombinedLoader knows its (mode-dependent) length only once iterated
    steps = len(loader)
    return {"val_check_interval": max(1, steps // checks_per_pass), "check_val_every_n_epoch": None}


@dataclass(frozen=True)
class ReplicateSeeds:
    """The effective seeds of one replicate.

    Attributes:
        data: the held-out D_new/D_ref split, loader shuffling, the bundled train/test split and
            the evaluation's MIA subsampling.
        forget: the draw of the forget set (sub-class and random scenarios).
        original: the original model's initialisation and training.
        method: every unlearning method, the Retrain reference and the relearning probe.
    """

    data: int
    forget: int
    original: int
    method: int

    @classmethod
    def of(cls, replicate: int, overrides: Mapping[str, int | None]) -> ReplicateSeeds:
        """The replicate's seed for every role that ``overrides`` leaves at ``None``."""
        return cls(**{role: replicate if overrides.get(role) is None else int(overrides[role]) for role in ("data", "forget", "original", "method")})  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunSettings:
    """Everything about a benchmark run but its seeds (picklable: worker processes receive it)."""

    dataset: DatasetName
    model: ModelName
    original_epochs: int
    forget_class: int
    fraction: float
    relearn_epochs: int
    max_epochs: int | None
    accelerator: str
    devices: int
    precision: str
    stopping: bool
    per_example_bank: int = 0
    bank_dir: str | None = None


@dataclass
class RunRecord:
    """One method (or the original, or the reference) on one scenario and replicate seed.

    Accuracies and gaps in ``metrics`` are fractions in [0, 1]; ``runtime_s`` is the unlearning call
    alone and ``wall_s`` the whole run (training, scoring, relearning probe), both in seconds.
    """

    scenario: str
    seed: int
    method: str
    metrics: dict[str, float] = field(default_factory=dict)
    runtime_s: float | None = None
    relearning: list[float] = field(default_factory=list)
    error: str | None = None
    steps: int | None = None
    stop_rule: bool = False
    stopped: bool = False
    stopped_step: int | None = None
    stopped_by: str | None = None
    guard_events: int = 0
    outcome: dict[str, Any] | None = None
    seeds: dict[str, int] = field(default_factory=dict)
    wall_s: float | None = None
    per_example_error: str | None = None

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.scenario, self.seed, self.method)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ helpers
def _flatten(payload: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict, keyed ``a/b`` (``None`` and non-numbers are left out)."""
    out: dict[str, float] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            out.update(_flatten(value, f"{prefix}{key}/" if isinstance(value, dict) else f"{prefix}{key}"))
    elif isinstance(payload, (bool, int, float)):
        out[prefix.rstrip("/")] = float(payload)
    elif isinstance(payload, torch.Tensor) and payload.numel() == 1:
        out[prefix.rstrip("/")] = float(payload.item())
    return out


def _evaluate(unlearned: nn.Module, dm: UnlearningDataModule, original: nn.Module, reference: nn.Module, seed: int) -> dict[str, float]:
    """Scalar metrics of ``unlearned`` (``acc_<split>``, ``mia_efficacy``, ``average_gap``, ``gaps/...``, ...)."""
    from lightning_unlearn.evaluation import evaluate

    payload = evaluate(unlearned, dm, original=original, reference=reference, seed=seed).to_dict()
    return _flatten({k: v for k, v in payload.items() if k not in ("models", "relearning", "splits", "forget_spec")})


def _recorder_callbacks() -> list[Callback]:
    """Callbacks attached to the original training so that every method gets its inputs (PrototypeRecorder)."""
    from lightning_unlearn.callbacks import PrototypeRecorder

    return [PrototypeRecorder()]


def _method_options(name: str, recorders: list[Callback], seed: int, max_epochs: int | None) -> dict[str, Any]:
    """A method's constructor arguments beyond the model: its seed, Naive PS's ``recording``, the epoch cap.

    Each run gets its own copy of the recording (Naive PS updates it in place after a request).
    """
    params = inspect.signature(get_method(name).__init__).parameters
    options: dict[str, Any] = {"seed": seed}
    for recorder in recorders:
        recording = getattr(recorder, "recording", None)
        if "recording" in params and recording is not None:
            options["recording"] = copy.deepcopy(recording)
    if max_epochs is not None:  # a cap: a method whose default budget is smaller (e.g. 0 for closed forms) keeps it
        options["max_epochs"] = min(int(params["max_epochs"].default), max_epochs)
    return options


def _datamodule(settings: RunSettings, spec: ForgetSpec, seeds: ReplicateSeeds) -> UnlearningDataModule:
    dm = UnlearningDataModule(
        settings.dataset, forget=spec, seed=seeds.data, forget_seed=seeds.forget, split_seed=seeds.data,
        new_fraction=0.1, ref_fraction=DEFAULT_REF_FRACTION, batch_size=64,
    )
    dm.setup()
    return dm


# --------------------------------------------------------------------------- the runs
def run_replicate(
    settings: RunSettings,
    replicate: int,
    seeds: ReplicateSeeds,
    pending: Mapping[str, Sequence[str]],
    on_done: Callable[[RunRecord], None],
) -> None:
    """Run the ``pending`` runs (scenario → method names) of one replicate seed.

    The names may include :data:`REFERENCE` (the Retrain row) and :data:`ORIGINAL` (the
    original model scored as is). The original model and each pending scenario's reference are
    trained even when their own rows are already finished: the other runs are scored against them.
    A method that fails becomes a record with its error; ``on_done`` receives every record.
    """
    trainer_kwargs: dict[str, Any] = {"accelerator": settings.accelerator, "devices": settings.devices}
    recorders = _recorder_callbacks()
    base_dm = _datamodule(settings, ClassForget(settings.forget_class), seeds)
    original = train_classifier(
        base_dm, settings.model, max_epochs=settings.original_epochs, lr=1e-3, seed=seeds.original,
        callbacks=recorders, **trainer_kwargs,
    )
    for scenario, names in pending.items():
        if not names:
            continue
        dm = _datamodule(settings, scenario_spec(scenario, settings.forget_class, settings.fraction), seeds)  # type: ignore[arg-type]
        start = time.perf_counter()
        seed_everything(seeds.method, workers=True, verbose=False)
        reference_method = create_method(REFERENCE, original, max_epochs=settings.original_epochs, lr=1e-3, seed=seeds.method)
        reference = unlearn(original, dm, method=reference_method, trainer_kwargs=dict(trainer_kwargs)).float()
        reference_wall = time.perf_counter() - start
        bank = _bank(settings, scenario, replicate, dm, seeds, trainer_kwargs) if settings.per_example_bank else None
        for name in names:
            start = time.perf_counter()
            record = RunRecord(scenario, replicate, name, seeds=asdict(seeds))
            if name == REFERENCE:
                record.runtime_s, record.steps = float(reference_method.runtime_s), int(reference_method.global_step)
                _score(record, reference, dm, original, reference, settings.relearn_epochs, seeds)
                start -= reference_wall  # its wall time includes training the reference
            elif name == ORIGINAL:
                record.runtime_s, record.steps = 0.0, 0
                _score(record, original, dm, original, reference, settings.relearn_epochs, seeds)
            else:
                _run_method(record, original, reference, dm, recorders, settings, trainer_kwargs, seeds)
            if bank is not None and record.error is None:
                _per_example(record, bank, settings)
            record.wall_s = time.perf_counter() - start
            on_done(record)


def _run_method(
    record: RunRecord,
    original: nn.Module,
    reference: nn.Module,
    dm: UnlearningDataModule,
    recorders: list[Callback],
    settings: RunSettings,
    trainer_kwargs: dict[str, Any],
    seeds: ReplicateSeeds,
) -> None:
    """Unlearn with ``record.method`` (default arguments), then score it into ``record``.

    With ``settings.stopping`` the method serves the request as it does by default (target, guard,
    step budget) and the record keeps its outcome: ``stop_rule`` (a target was set), ``stopped``
    (it was reached), ``stopped_step`` (the step of the returned state), ``stopped_by`` and the
    number of guard events. Otherwise the method runs its fixed epoch budget.
    """
    try:
        seed_everything(seeds.method, workers=True, verbose=False)  # a method drawing in __init__ sees the same state
        options = _method_options(record.method, recorders, seeds.method, settings.max_epochs)
        if not settings.stopping:
            options.update(target=None, guard=None)
        method = create_method(record.method, original, **options)
        with warnings.catch_warnings():  # an unserved request is recorded below, not printed per run
            warnings.simplefilter("ignore", UnlearningTargetWarning)
            unlearned = unlearn(original, dm, method=method, trainer_kwargs={**trainer_kwargs, "precision": settings.precision})
        outcome = method.outcome
        record.runtime_s, record.steps = float(method.runtime_s), int(outcome.steps if outcome else method.global_step)
        if outcome is not None:
            record.stop_rule, record.stopped = outcome.target is not None, bool(outcome.reached)
            record.stopped_step, record.stopped_by = outcome.returned_step, outcome.stopped_by
            record.guard_events, record.outcome = len(outcome.guard_events), _outcome_summary(outcome)
        _score(record, unlearned, dm, original, reference, settings.relearn_epochs, seeds)
    except Exception as err:  # a failing method is reported as a failed row, never hidden
        record.error = f"{type(err).__name__}: {err}"
        logging.getLogger(__name__).debug(traceback.format_exc())


def _bank(settings: RunSettings, scenario: str, replicate: int, dm: UnlearningDataModule, seeds: ReplicateSeeds,
          trainer_kwargs: dict[str, Any]) -> Any:
    """The scenario's and replicate's model bank: K originals (seeds ``original``, ``original + 1``, ...) trained with
    the benchmark's recipe, K retrained models, and K unlearned models per method, kept in ``bank_dir``."""
    from lightning_unlearn.model_bank import ModelBank

    folder = None if settings.bank_dir is None else f"{settings.bank_dir}/{scenario}-seed{replicate}"
    return ModelBank(dm, folder, k=settings.per_example_bank, model=settings.model, max_epochs=settings.original_epochs,
                     lr=1e-3, seed=seeds.original, trainer_kwargs=dict(trainer_kwargs))


def _per_example(record: RunRecord, bank: Any, settings: RunSettings) -> None:
    """Add the per-example scores of ``record``'s row to its metrics (``per_example/<column>``).

    A method runs in the bank as in the benchmark (its defaults, the epoch cap, the stopping choice), once per
    bank original. A failure is kept in ``record.per_example_error``; the rest of the run stands.
    """
    from lightning_unlearn.forgetting_audit import ORIGINAL_ROW, REFERENCE_ROW, bank_row, summary_columns

    row = {REFERENCE: REFERENCE_ROW, ORIGINAL: ORIGINAL_ROW}.get(record.method, record.method)
    options: dict[str, Any] = {}
    if row == record.method:
        options = {k: v for k, v in _method_options(record.method, [], 0, settings.max_epochs).items() if k != "seed"}
        if not settings.stopping:
            options.update(target=None, guard=None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnlearningTargetWarning)
            scores = summary_columns(bank_row(bank, row, options))
        record.metrics.update({f"per_example/{k}": v for k, v in scores.items()})
    except Exception as err:  # e.g. a method that needs what the bank's originals do not record
        record.per_example_error = f"{type(err).__name__}: {err}"
        logging.getLogger(__name__).debug(traceback.format_exc())


def _outcome_summary(outcome: Any) -> dict[str, Any]:
    """The outcome without its per-check history (kept small in results.json)."""
    return {k: v for k, v in outcome.to_dict().items() if k != "history"}


def _score(
    record: RunRecord, model: nn.Module, dm: UnlearningDataModule, original: nn.Module, reference: nn.Module,
    relearn_epochs: int, seeds: ReplicateSeeds,
) -> None:
    """Evaluate ``model`` against the original and the reference, and probe relearning."""
    model = model.float()
    record.metrics = _evaluate(model, dm, original, reference, seeds.data)
    record.relearning = relearn(model, dm, epochs=relearn_epochs, seed=seeds.method).forget_accuracy if relearn_epochs else []
