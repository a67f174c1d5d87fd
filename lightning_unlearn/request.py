"""Serve a deletion request: the target it implies, the utility guard, the step budget and the outcome.

Every :class:`~lightning_unlearn.methods.base.UnlearningMethod` runs, by default, until its request
is served rather than for a fixed number of epochs. :class:`ServeRequest` (attached by the method's
``configure_callbacks``, so it applies to ``unlearn()``, the CLI and a user's own ``Trainer.fit``):

* derives the **target** from the forget specification, before the first step:

  - class-wise: the accuracy on D_f, and on the test samples of the forgotten classes (D_tf), at
    most ``target`` (default 0.01);
  - sub-class, random or explicit indices: the accuracy on D_f brought down to the accuracy the
    model had *before unlearning* on held-out samples (D_ref) of the same classes, weighted like
    D_f's classes; reached when within two binomial standard errors of it (of D_f's size), in
    either direction -- forgetting too much is a failure too, since a membership attack sees it;

* keeps the **utility guard**: the held-out accuracy on retained classes (D_ref, or the test
  samples of retained classes when there is no D_ref) may not fall more than ``guard`` below its
  value before unlearning; a state that violates it is never returned, and
  :data:`GUARD_PATIENCE` consecutive violating checks end the run unless the retained accuracy is
  climbing back (methods that descend on D_r may wreck it first, then recover); the first
  :data:`BACKOFFS` times the guard or a non-finite loss would end it, the run goes back to its best
  checked state with its learning rates halved instead; while the guard holds but the forget
  accuracy moves too slowly to reach the aim within the budget left, the learning rates are
  doubled (at most :data:`SPEEDUPS` times): the checks adapt a default learning rate to the model;
* checks at a cadence tied to steps: every ``check_every`` steps (by default twice as many steps as the
  checked samples fill training batches, :data:`CHECK_SPACING`: the regular checks cost about a sixth
  of a long run; the checks before and after it, the early ones and those after a roll-back are fixed
  costs that dominate runs of a few seconds (measured on MNIST-5k/LeNet-5: 16-20% for NegGrad+,
  14-31% for UGradSL+, 25-64% for runs of 0.1-3 s; on All-CNN 20-22% for NegGrad+ and UGradSL+);
  the first two checks come after a quarter and a half of that, since the first steps move most), more often
  when the forget accuracy is about to reach its aim; every check is a DDP-exact count
  (:func:`~lightning_unlearn.passes.class_counts`);
* goes back once to the best checked state (weights and optimiser state), then checks eight times
  as often, when the forget accuracy crossed its aim between two checks and landed past the target
  or through a guard the previous check respected: the state that serves the request lay between
  those checks (methods whose schedule overshoots on purpose, SCRUB, set ``rolls_back = False``);
* ends the run at the target, at a guard violation or at the **step budget**
  (``max_steps``, default ``max(max_epochs`` passes, ``min_steps)``, granted once more to a run on
  course to its target, :data:`BUDGET_EXTENSIONS`), then restores the best
  checked state that respected the guard (the state before unlearning is one of them) and hands
  the caller an :class:`UnlearningOutcome`; a target not reached is an
  :class:`UnlearningTargetWarning`, or an :class:`UnlearningTargetError` with ``strict=True``.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, Subset, TensorDataset

from lightning_unlearn.passes import class_counts

if TYPE_CHECKING:
    from lightning_unlearn.data.datamodule import UnlearningDataModule

TargetOption = float | Literal["auto"] | None
REQUEST_OPTIONS = ("target", "guard", "strict", "max_steps", "min_steps", "check_every")
"""The arguments a method forwards to its :class:`ServeRequest` (same names, same defaults)."""
CLASS_TARGET = 0.01
"""Default class-wise target: forget accuracy at most 1% on D_f and D_tf."""
STANDARD_ERRORS = 2.0
"""Instance-wise tolerance, in binomial standard errors of the forget set's size."""
GUARD_PATIENCE = 3
"""A run ends after this many consecutive checks violate the guard, spanning at least ``GUARD_PATIENCE - 1``
check intervals, unless the last of them rose above the first (methods that descend on D_r may recover)."""
CHECK_SPACING = 2.0
"""Default cadence: a check every ``CHECK_SPACING × checked samples / batch size`` steps, the batch of a
step being global (the per-process batch × the number of processes). A check is a forward pass over
the checked samples, a step a forward and backward pass over a batch (about three forwards), so
regular checks cost about a sixth of a one-pass-per-step method's time; sooner near the aim."""
BACKOFFS = 2
"""Times a run that would end by the guard or a non-finite loss goes back to its best checked state
with its learning rates halved instead (:data:`BACKOFF_FACTOR`)."""
BACKOFF_FACTOR = 0.5
SPEEDUPS = 3
"""Times a run whose forget accuracy moves too slowly to reach the aim within its budget, the guard
holding, has its learning rates doubled (:data:`SPEEDUP_FACTOR`)."""
SPEEDUP_FACTOR = 2.0
SPEEDUP_MARGIN = 2.0
"""Too slow means: at the pace of the last check interval, the aim is more than this many budgets-left
away (forgetting often accelerates after a slow start; measured: NegGrad+ on MNIST-5k class 3
doubled at step 35 on a pace that would have served it at step 55 anyway, at 2.5 more points of
retained test accuracy)."""
BUDGET_EXTENSIONS = 1
"""Times the default step budget is granted again to a run on course to its target (never a ``max_steps``)."""
CHECK_CAP = 2048
"""At most this many samples of a split are checked (a fixed, seeded subset)."""


class UnlearningTargetWarning(UserWarning):
    """An unlearning run ended without reaching its request's target, or its guard restored a state."""


class UnlearningTargetError(RuntimeError):
    """``strict=True`` and the unlearning run did not reach its request's target."""


def validate_request_options(
    target: Any, guard: Any, strict: Any, max_steps: Any, min_steps: Any, check_every: Any
) -> None:
    """Raise a one-line ``ValueError``/``TypeError`` naming the first invalid request option."""
    if target is not None and target != "auto":
        if isinstance(target, bool) or not isinstance(target, (int, float)):
            raise TypeError(f"`target` must be 'auto', None or a forget accuracy in [0, 1], got {target!r}.")
        if not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"`target` must be 'auto', None or a forget accuracy in [0, 1], got {target}.")
    if guard is not None:
        if isinstance(guard, bool) or not isinstance(guard, (int, float)):
            raise TypeError(f"`guard` must be None or an accuracy drop in [0, 1], got {guard!r}.")
        if not 0.0 <= float(guard) <= 1.0:
            raise ValueError(f"`guard` must be None or an accuracy drop in [0, 1] (e.g. 0.02 for 2 points), got {guard}.")
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be a bool, got {strict!r}.")
    if strict and target is None:
        raise ValueError("`strict=True` needs a target to enforce, got `target=None`.")
    for name, value, low in (("max_steps", max_steps, 1), ("check_every", check_every, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"`{name}` must be None or an integer >= {low}, got {value!r}.")
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
        raise ValueError(f"`min_steps` must be an integer >= 0, got {min_steps!r}.")


@dataclass(frozen=True)
class Target:
    """What serving a request means, in forget accuracy.

    Attributes:
        kind: ``"class"`` (at most ``aim`` on D_f and D_tf) or ``"instance"`` (within
            ``tolerance`` of ``aim`` on D_f, the held-out accuracy before unlearning).
        aim: the forget accuracy aimed at.
        tolerance: accepted distance from ``aim`` (instance-wise; 0 for class-wise).
        description: the target in words.
    """

    kind: Literal["class", "instance"]
    aim: float
    tolerance: float
    description: str

    def distance(self, forget: float) -> float:
        """How far ``forget`` (the worst monitored forget accuracy) is from the aim (0 = on it)."""
        return max(forget - self.aim, 0.0) if self.kind == "class" else abs(forget - self.aim)

    def reached(self, forget: float) -> bool:
        return self.reached_at(self.distance(forget))

    def reached_at(self, distance: float) -> bool:
        """Whether a forget accuracy at ``distance`` from the aim (see :meth:`distance`) meets the target."""
        return distance <= self.tolerance + 1e-12

    def aim_crossed(self, forget: float) -> bool:
        """Whether training further cannot bring ``forget`` closer to the aim (the run may stop)."""
        return forget <= self.aim + (1e-12 if self.kind == "class" else 0.0)


@dataclass
class UnlearningOutcome:
    """What an unlearning run achieved (returned with the unlearned model; written by the CLI).

    Accuracies are fractions in [0, 1]. ``before``/``after`` hold ``forget`` (D_f), ``forget_heldout``
    (D_tf, class-wise) and ``retained_heldout`` (the guarded accuracy); ``after`` is the returned state.
    ``rollbacks`` lists the (at most one) return to the best checked state after the forget accuracy
    crossed its aim between two checks, past the target or through the guard; ``backoffs`` the returns
    to it with halved learning rates where the guard or a non-finite loss would have ended the run; ``budget_extensions``
    counts the times the default budget was granted again to a run on course; ``notes`` what the method
    did differently for this model (e.g. a slower path where operations follow the head).
    """

    method: str
    request: str
    target: dict[str, Any] | None
    reached: bool | None
    stopped_by: str
    steps: int
    budget_steps: int | None
    returned_step: int
    restored: bool = False
    runtime_s: float = 0.0
    check_time_s: float = 0.0
    checks: int = 0
    guard: float | None = None
    guard_events: list[dict[str, float]] = field(default_factory=list)
    rollbacks: list[dict[str, float]] = field(default_factory=list)
    backoffs: list[dict[str, Any]] = field(default_factory=list)
    speedups: list[dict[str, float]] = field(default_factory=list)
    budget_extensions: int = 0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: target, whether reached, accuracies before → after, steps and wall time."""
        accs = ", ".join(
            f"{k} {self.before[k]:.3f}→{self.after[k]:.3f}" for k in ("forget", "forget_heldout", "retained_heldout")
            if k in self.before and k in self.after
        )
        if self.target:
            state = "reached" if self.reached else "NOT reached"
            head = f"target {self.target['description']} {state} ({accs})"
        else:
            head = "no target" + (f" ({accs})" if accs else "")
        guard = f"; returned the checked state of step {self.returned_step}" if self.restored else ""
        return (
            f"{self.method}: {head} after {self.steps} steps, stopped by {self.stopped_by},"
            f" {self.runtime_s:.2f} s ({self.check_time_s:.2f} s checks){guard}."
        ) + "".join(f" Note: {note}." for note in self.notes)


def _fixed_subset(indices: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Positions of at most ``cap`` samples among ``indices`` (seeded; the same on every process)."""
    if indices.size <= cap:
        return np.arange(indices.size)
    return np.sort(np.random.default_rng(seed).permutation(indices.size)[:cap])


class ServeRequest(Callback):
    """Run an unlearning method until its request is served, within the utility guard (see the module docs).

    Usually created by the method itself (its ``target``, ``guard``, ``strict``, ``max_steps``,
    ``min_steps`` and ``check_every`` arguments); pass one to the Trainer to override it.

    Args:
        target: ``"auto"`` (derived from the request), a forget accuracy in [0, 1] (class-wise:
            the threshold; instance-wise: the aim), or ``None`` (no target: only the guard and the
            budget, which then is the method's ``max_epochs`` unless ``max_steps`` is given).
        guard: largest allowed drop of the held-out accuracy on retained classes (``None``: off).
        strict: raise :class:`UnlearningTargetError` when the target is not reached.
        max_steps: step budget (training batches); default ``max(max_epochs`` passes, ``min_steps)``.
        min_steps: floor of the default step budget.
        check_every: steps between checks (default: derived from the checked samples).

    Raises:
        MisconfigurationException: at fit start, if the module is not an unlearning method or the
            data module cannot provide the held-out data the target needs (set ``ref_fraction``).
    """

    def __init__(
        self,
        target: TargetOption = "auto",
        guard: float | None = 0.02,
        strict: bool = False,
        max_steps: int | None = None,
        min_steps: int = 200,
        check_every: int | None = None,
    ) -> None:
        validate_request_options(target, guard, strict, max_steps, min_steps, check_every)
        self.target_option, self.guard = target, (None if guard is None else float(guard))
        self.strict, self.max_steps, self.min_steps, self.check_every = strict, max_steps, min_steps, check_every
        self.outcome: UnlearningOutcome | None = None
        self._reset()

    def budget_applies(self) -> bool:
        """Whether a step budget (rather than the method's epochs) ends the run."""
        return self.max_steps is not None or self.target_option is not None

    def _reset(self) -> None:
        self.target: Target | None = None
        self.steps = 0
        self.budget: int | None = None
        self.loaders: dict[str, DataLoader] = {}
        self.forget_weights: np.ndarray | None = None
        self.before: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.guard_events: list[dict[str, float]] = []
        self.best: tuple[float, int, dict[str, torch.Tensor], list[dict[str, Any]]] | None = None
        # (score, history index, model state, optimiser states)
        self.last_check = -1  # the step of the last check of a trained state
        self.next_check = 0
        self.interval = 1
        self.check_time = 0.0
        self.stopped_by = "trainer"  # the Trainer's own limits (max_epochs, max_steps, max_time), unless set below
        self.violations = 0  # consecutive checks that violated the guard
        self.violated_since = 0  # the step of the first of them
        self.violated_values: list[float] = []  # their held-out retained accuracies
        self.rolled_back = False  # whether the run went back to its best state once (see _roll_back)
        self.rollbacks: list[dict[str, float]] = []
        self.extensions = 0  # times the default budget was extended (see _extend_budget)
        self.backoffs: list[dict[str, float]] = []  # returns to the best state with smaller steps (see _back_off)
        self.lr_scale = 1.0
        self.speedups: list[dict[str, float]] = []  # learning rates doubled (see _speed_up)
        self.lr_changed_at = 0
        self.base_lrs: list[list[float]] = []  # every optimiser's learning rates before the first step
        self._resumed_best: tuple[float, int, dict[str, torch.Tensor], list[dict[str, Any]]] | None = None
        self.first_budget = 0

    # ---------------------------------------------------------------- set-up
    def _datamodule(self, trainer: Trainer, pl_module: LightningModule) -> UnlearningDataModule:
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not callable(getattr(dm, "split_dataset", None)):
            raise MisconfigurationException(
                f"{type(pl_module).__name__} serves the request held by an UnlearningDataModule: call"
                " trainer.fit(method, datamodule=dm), or build the method with `target=None, guard=None`."
            )
        return dm

    def _loader(self, dm: UnlearningDataModule, split: str, keep: np.ndarray | None = None) -> DataLoader | None:
        """A loader over a fixed subset (at most :data:`CHECK_CAP`) of ``split`` restricted to ``keep`` classes."""
        if not dm.has_split(split):
            return None
        labels = dm.split_targets(split)  # type: ignore[arg-type]
        positions = np.arange(labels.size) if keep is None else np.flatnonzero(np.isin(labels, keep))
        if positions.size == 0:
            return None
        positions = positions[_fixed_subset(positions, CHECK_CAP, dm.seed)]
        subset = Subset(dm.split_dataset(split), positions.tolist())  # type: ignore[arg-type]
        # Materialised once (at most CHECK_CAP samples): every check is then forward passes only.
        xs, ys = zip(*((item[0], item[1]) for item in subset))
        dataset = TensorDataset(torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys, dtype=torch.long))
        return DataLoader(dataset, batch_size=dm.eval_batch_size, shuffle=False, num_workers=0)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        from lightning_unlearn.data.forget import ClassForget
        from lightning_unlearn.methods.base import UnlearningMethod

        if not isinstance(pl_module, UnlearningMethod):
            raise MisconfigurationException(f"ServeRequest serves unlearning methods; {type(pl_module).__name__} is not one.")
        self._reset()
        if not self.checking:
            return
        dm = self._datamodule(trainer, pl_module)
        dm.setup("fit")
        k = pl_module.num_classes
        classwise = isinstance(dm.forget, ClassForget)
        forget_classes = np.asarray(sorted(set(int(c) for c in dm.split_targets("forget"))))
        retained = np.setdiff1d(np.arange(k), forget_classes) if classwise else np.arange(k)
        self.loaders = {"forget": self._loader(dm, "forget")}  # type: ignore[dict-item]
        if classwise:
            heldout = self._loader(dm, "test_forget") if dm.has_split("test_forget") else None
            if heldout is not None:
                self.loaders["forget_heldout"] = heldout
        guard_loader = self._loader(dm, "ref", retained) or self._loader(dm, "test", retained)
        if self.guard is not None:
            if guard_loader is None:
                raise MisconfigurationException("The utility guard needs held-out samples of retained classes; none exist.")
            self.loaders["retained_heldout"] = guard_loader
        if self.target_option is not None and not classwise:
            ref = self._loader(dm, "ref", forget_classes)
            if ref is None:
                raise MisconfigurationException(
                    f"The target of the request {dm.forget!r} is the accuracy before unlearning on held-out samples of"
                    " the forgotten samples' classes, but the data module has none: build it with `ref_fraction` > 0"
                    " (e.g. 0.1), or pass `target=None`."
                )
            self.loaders["ref"] = ref
            counts = np.bincount(dm.split_targets("forget"), minlength=k).astype(float)  # type: ignore[arg-type]
            self.forget_weights = counts / counts.sum()

    # ---------------------------------------------------------------- checks
    def _measure(self, trainer: Trainer, pl_module: LightningModule, splits: tuple[str, ...] | None = None) -> dict[str, float]:
        start = time.perf_counter()
        values: dict[str, float] = {}
        for split, loader in self.loaders.items():
            if splits is not None and split not in splits:
                continue
            correct, total = class_counts(pl_module.model, loader, pl_module.num_classes, trainer)  # type: ignore[arg-type]
            if split == "ref":
                present = total > 0
                weights = torch.as_tensor(self.forget_weights) * present
                per_class = correct.double() / total.clamp(min=1).double()
                values[split] = float((weights * per_class).sum() / weights.sum())
            else:
                values[split] = float(correct.sum()) / max(int(total.sum()), 1)
        self.check_time += time.perf_counter() - start
        return values

    def _derive_target(self, pl_module: LightningModule, before: dict[str, float]) -> Target | None:
        if self.target_option is None:
            return None
        n = len(self.loaders["forget"].dataset)  # type: ignore[arg-type]
        if "ref" not in self.loaders:  # class-wise
            aim = CLASS_TARGET if self.target_option == "auto" else float(self.target_option)  # type: ignore[arg-type]
            where = "D_f and D_tf" if "forget_heldout" in self.loaders else "D_f"
            return Target("class", aim, 0.0, f"forget accuracy <= {aim:.3f} on {where}")
        aim = before["ref"] if self.target_option == "auto" else float(self.target_option)  # type: ignore[arg-type]
        tolerance = STANDARD_ERRORS * math.sqrt(max(aim * (1.0 - aim), 0.25 / n) / n)
        return Target(
            "instance", aim, tolerance,
            f"forget accuracy within {tolerance:.3f} of {aim:.3f} (the held-out accuracy of the same classes before unlearning)",
        )

    def _forget_value(self, values: dict[str, float]) -> float:
        return max(values["forget"], values.get("forget_heldout", 0.0)) if self.target and self.target.kind == "class" else values["forget"]

    def judge(self, values: dict[str, float]) -> tuple[float, bool, bool]:
        """``(distance to the target, guard respected, aim crossed)`` of checked accuracies ``values``.

        The one rule every check decides by (also used by methods that check a state themselves,
        e.g. PS on its cached embeddings).
        """
        respected = self.guard is None or values["retained_heldout"] >= self.before["retained_heldout"] - self.guard - 1e-12
        if self.target is None:
            return 0.0, respected, False
        forget = self._forget_value(values)
        return self.target.distance(forget), respected, self.target.aim_crossed(forget)

    def record_inner_run(self, steps: int, stopped_by: str) -> None:
        """A method that iterates outside the Trainer's loop (PS's head on cached embeddings) reports its steps."""
        self.steps, self.stopped_by = int(steps), stopped_by

    def _check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Measure, record, keep the best state, and decide whether the run ends here."""
        splits = tuple(s for s in self.loaders if s != "ref")
        values = self._measure(trainer, pl_module, splits)
        self.history.append({"step": float(self.steps), **values})
        self.last_check = self.steps
        score, respected, crossed = self.judge(values)
        if respected and (self.best is None or score < self.best[0] - 1e-12 or self.target is None):
            self.best = (score, len(self.history) - 1, _copy_state(pl_module), _copy_optimizers(trainer))
        if getattr(pl_module, "rolls_back", True) and self._should_roll_back(values, respected, crossed):
            return self._roll_back(trainer, pl_module, values, respected)
        if not respected:
            self.guard_events.append(
                {"step": float(self.steps), "retained_heldout": values["retained_heldout"],
                 "limit": self.before["retained_heldout"] - self.guard}  # type: ignore[operator]
            )
            self.violations += 1
            if self.violations == 1:
                self.violated_since, self.violated_values = self.steps, []
            self.violated_values.append(values["retained_heldout"])
            # Patience in checks AND in steps: checks brought forward (below) must not end a run sooner
            # than GUARD_PATIENCE checks at the regular cadence would; and a run whose retained
            # accuracy is climbing back (methods that descend on D_r wreck, then recover) goes on.
            if (self.violations >= GUARD_PATIENCE and self.steps - self.violated_since >= (GUARD_PATIENCE - 1) * self.interval
                    and not self._recovering()):
                if self._back_off(trainer, pl_module, "guard"):
                    return None
                self.stopped_by = "guard"
                trainer.should_stop = True
            return self._schedule(values, soon=crossed)
        self.violations = 0
        if crossed:
            self.stopped_by = "target"
            trainer.should_stop = True
        else:
            self._speed_up(trainer)
        self._schedule(values)

    def _speed_up(self, trainer: Trainer) -> None:
        """Double every learning rate (at most :data:`SPEEDUPS` times) when the guard holds but the forget
        accuracy, over the last check interval, moves far too slowly to reach the aim within the budget
        left (:data:`SPEEDUP_MARGIN`).

        The counterpart of :meth:`_back_off`: a default learning rate too small for the model or the data
        would otherwise end the run at its budget. Never after a return to the best state (a step
        found too large is not grown again), nor within an interval of the last change (too little
        evidence of the new rate).
        """
        if (self.target is None or self.budget is None or len(self.speedups) >= SPEEDUPS or self.backoffs
                or self.rolled_back or not self.base_lrs):
            return
        pace = self._pace(since=self.lr_changed_at, span=self.interval)
        if pace is None:
            return
        rate, remaining = pace
        left = self.budget - self.steps
        if remaining <= self.target.tolerance or (rate > 0 and remaining / rate <= SPEEDUP_MARGIN * left):
            return
        self.lr_scale *= SPEEDUP_FACTOR
        self._set_lrs(trainer, SPEEDUP_FACTOR)
        self.lr_changed_at = self.steps
        self.speedups.append({"step": float(self.steps), "lr_scale": self.lr_scale})

    def _pace(self, since: float = 0.0, span: float | None = None) -> tuple[float, float] | None:
        """``(rate, remaining)``: the forget accuracy's fall per step since the last check at least ``span``
        steps ago (default: an interval, or half the run if shorter) and at or after step ``since``, and
        its distance from the aim now; None without such a check."""
        assert self.target is not None
        last = self.history[-1]
        span = min(self.interval, last["step"] / 2) if span is None else span
        earlier = [h for h in self.history[:-1] if since <= h["step"] <= last["step"] - span]
        if not earlier:
            return None
        first = earlier[-1]
        rate = (self._forget_value(first) - self._forget_value(last)) / max(last["step"] - first["step"], 1.0)
        return rate, self._forget_value(last) - self.target.aim

    def _set_lrs(self, trainer: Trainer, factor: float) -> None:
        """Every optimiser's learning rates at the run's scale (schedules scaled by ``factor``)."""
        for optimizer, base in zip(trainer.optimizers, self.base_lrs):
            for group, lr in zip(optimizer.param_groups, base):
                group["lr"] = lr * self.lr_scale
        for config in getattr(trainer, "lr_scheduler_configs", []):
            if hasattr(config.scheduler, "base_lrs"):  # a schedule would otherwise set the old rates again
                config.scheduler.base_lrs = [lr * factor for lr in config.scheduler.base_lrs]

    def _recovering(self) -> bool:
        """Whether the held-out retained accuracy rose over the last ``GUARD_PATIENCE`` violating checks
        (by more than one checked sample: the check set is fixed, so a rise is not sampling noise)."""
        n = len(self.loaders["retained_heldout"].dataset)  # type: ignore[arg-type]
        recent = self.violated_values[-GUARD_PATIENCE:]
        return recent[-1] > recent[0] + 1.0 / n

    def _should_roll_back(self, values: dict[str, float], respected: bool, crossed: bool) -> bool:
        """The aim was crossed between two checks, past the target or through the guard: go back once.

        Only when the previous check respected the guard: the damage then happened within the last
        interval, next to the state that serves the request. A run already violating it before the
        crossing (it wrecked the retained classes first) goes on: it may recover, and going back
        would replay the same path.
        """
        if not crossed or self.rolled_back or self.best is None or self.target is None or self.violations:
            return False
        served = respected and self.target.reached(self._forget_value(values))
        return not served and self.history[self.best[1]]["step"] < self.steps and self.interval > 1

    def _roll_back(self, trainer: Trainer, pl_module: LightningModule, values: dict[str, float], respected: bool) -> None:
        """Restore the best checked state (weights and optimiser state) and go on with checks 8x as often.

        The forget accuracy crossed its aim within one check interval, overshooting the target or
        damaging the retained classes on the way; the state that serves the request lies between
        the two checks, so the run resumes from the earlier one and checks closely. Once per run.
        """
        index = self._restore_best(trainer, pl_module)
        event = {"step": float(self.steps), "to_step": self.history[index]["step"], "forget": self._forget_value(values)}
        if not respected:
            event["retained_heldout"] = values["retained_heldout"]
        self.rollbacks.append(event)
        self.rolled_back, self.violations = True, 0
        self.next_check = self.steps + max(1, self.interval // 8)

    def _restore_best(self, trainer: Trainer, pl_module: LightningModule, factor: float = 1.0) -> int:
        """Load the best checked weights and optimiser states, at the run's current learning-rate scale
        (schedules scaled by ``factor``); returns the state's index in the history."""
        _, index, state, optimizers = self.best  # type: ignore[misc]
        pl_module.model.load_state_dict(state)  # type: ignore[union-attr]
        for optimizer, saved in zip(trainer.optimizers, optimizers):
            optimizer.load_state_dict(copy.deepcopy(saved))
        self._set_lrs(trainer, factor)  # the saved states hold the rates of their time
        self.last_check = -1  # the model is no longer the state last checked: a run ending now re-checks it
        return index

    def _back_off(self, trainer: Trainer, pl_module: LightningModule, reason: str) -> bool:
        """Instead of ending the run (guard or non-finite loss): back to the best checked state with every
        learning rate halved, at most :data:`BACKOFFS` times, while a check interval of budget is left.

        A step too large for the model (measured: UGradSL's default on some MNIST classes collapses the
        retained classes between two checks, half of it forgets them within the guard) is the one cause
        of these ends a smaller step cures; a method whose path itself damages the retained classes
        spends at most these extra steps before its run ends as before.
        """
        if len(self.backoffs) >= BACKOFFS or self.best is None or not self.base_lrs:
            return False
        if self.budget is not None and self.budget - self.steps < self.interval:
            return False
        self.lr_scale *= BACKOFF_FACTOR
        index = self._restore_best(trainer, pl_module, BACKOFF_FACTOR)
        self.lr_changed_at = self.steps
        self.backoffs.append({"step": float(self.steps), "to_step": self.history[index]["step"], "lr_scale": self.lr_scale,
                              "reason": reason})  # type: ignore[dict-item]
        self.violations, self.violated_values = 0, []
        self.next_check = self.steps + max(1, self.interval // 8)
        return True

    def _schedule(self, values: dict[str, float], soon: bool = False) -> None:
        """Next check: ``interval`` steps on (a quarter, then half of it for the first two: the first
        steps can move the most, and two checks give a rate), sooner when the forget accuracy nears the aim.

        ``soon``: the aim is crossed but the guard violated; the held-out accuracy moves from step to
        step, so the next check comes after a quarter of the interval, to find a state that respects it.
        """
        checked = len(self.history) - 1  # checks of trained states so far
        step = self.interval if self.check_every else max(1, self.interval >> max(0, 2 - checked))
        returned = self.rolled_back or bool(self.backoffs)  # the run went back once: the state it missed is near
        if returned:
            step = max(1, self.interval // 8)
        if soon:
            self.next_check = self.steps + max(1, self.interval // 4)
            return
        if self.target is not None and len(self.history) >= 2:
            prev, last = self.history[-2], self.history[-1]
            span = last["step"] - prev["step"]
            rate = (self._forget_value(prev) - self._forget_value(last)) / max(span, 1.0)
            remaining = self._forget_value(last) - self.target.aim
            if rate > 0 and remaining > 0:
                floor = 1 if returned else max(1, self.interval // 8)  # after a return, down to every step
                step = int(min(step, max(floor, math.floor(0.5 * remaining / rate))))
        self.next_check = self.steps + max(step, 1)

    # ---------------------------------------------------------------- hooks
    @property
    def checking(self) -> bool:
        """Whether the run is checked at all (a target or a guard); without, only the step budget applies."""
        return self.target_option is not None or self.guard is not None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Runs before the method's own on_fit_start (one-shot methods do their work there).
        if not self.checking:
            self.next_check = math.inf  # type: ignore[assignment]
            return
        resumed = bool(self.before)  # restored from a checkpoint: keep the accuracies measured before unlearning
        if not resumed:
            self.before = self._measure(trainer, pl_module)
            self.history = [{"step": 0.0, **{k: v for k, v in self.before.items() if k != "ref"}}]
        self.target = self._derive_target(pl_module, self.before)
        if resumed and self._resumed_best is not None:
            self.best, self._resumed_best = self._resumed_best, None
            return  # the cadence (interval, next check) came with the checkpoint
        self.best = (self.target.distance(self._forget_value(self.history[-1])) if self.target else 0.0,
                     len(self.history) - 1, _copy_state(pl_module), _copy_optimizers(trainer))
        checked = sum(len(loader.dataset) for name, loader in self.loaders.items() if name != "ref")  # type: ignore[arg-type]
        # A step takes a batch on every process: the cadence counts the samples of the global batch, so
        # N processes at ``batch / N`` check at the same steps as one process at ``batch``.
        batch = (getattr(trainer.datamodule, "batch_size", 64) or 64) * trainer.world_size  # type: ignore[union-attr]
        self.interval = self.check_every or max(1, math.ceil(CHECK_SPACING * checked / batch))
        self._schedule({})

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        hp = pl_module.hparams
        if not self.base_lrs:  # (a resumed run brought them)
            self.base_lrs = [[float(group["lr"]) for group in optimizer.param_groups] for optimizer in trainer.optimizers]
        extended = self.budget if self.extensions else None  # a resumed run keeps the extension it was granted
        if self.max_steps is not None:
            self.budget = self.max_steps
        elif self.target_option is not None:
            per_epoch = trainer.num_training_batches
            per_epoch = per_epoch if math.isfinite(per_epoch) else 0
            self.budget = max(int(hp.max_epochs) * int(per_epoch), self.min_steps)
        self.first_budget = self.budget or 0
        self.budget = extended or self.budget
        if self.target is not None and not self.guard_events and self.target.aim_crossed(self._forget_value(self.history[-1])):
            self.stopped_by = "target"
            trainer.should_stop = True

    def stop_on_non_finite(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A non-finite loss (its update is skipped) sends the run back to its best checked state with
        smaller steps (:meth:`_back_off`) or, when it cannot, ends it; the best checked state is returned."""
        self.guard_events.append({"step": float(self.steps), "non_finite_loss": 1.0})
        if self._back_off(trainer, pl_module, "non-finite loss"):
            return
        self.violations = max(self.violations, 1)
        self.stopped_by = "non-finite loss"
        trainer.should_stop = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.steps += 1
        if self.steps >= self.next_check:
            self._check(trainer, pl_module)
        if self.budget is not None and self.steps >= self.budget and not trainer.should_stop:
            if self._extend_budget(trainer, pl_module):
                return
            if not trainer.should_stop:  # the check made by _extend_budget may have ended the run itself
                self.stopped_by = "budget"
                trainer.should_stop = True

    def _extend_budget(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        """At the default budget, a run that is on course gets it once more (:data:`BUDGET_EXTENSIONS`).

        On course: the guard respected at the last check, and the forget accuracy falling at a rate
        (over the last check interval) that reaches the aim within another budget. A budget the user
        set (``max_steps``) is never extended.
        """
        if self.max_steps is not None or self.target is None or self.extensions >= BUDGET_EXTENSIONS:
            return False
        if self.last_check != self.steps:
            self._check(trainer, pl_module)
            if trainer.should_stop:
                return False
        if self.violations:
            return False
        pace = self._pace()
        if pace is None:
            return False
        rate, remaining = pace
        if rate <= 0 or remaining <= 0 or remaining / rate > self.first_budget:
            return False
        self.extensions += 1
        self.budget = self.steps + self.first_budget  # type: ignore[assignment]
        return True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After the training loop, or in its place for a method that stopped it before its first
        # epoch (one-shot methods); before the method's own on_fit_end (which adds the wall time).
        if not self.checking:
            self.outcome = UnlearningOutcome(
                method=type(pl_module).__name__, request=repr(getattr(trainer.datamodule, "forget", None)), target=None,
                reached=None, stopped_by=self.stopped_by, steps=self.steps, budget_steps=self.budget, returned_step=self.steps,
            )
            pl_module.outcome = self.outcome  # type: ignore[assignment]
            return
        if self.best is None:
            return
        if self.last_check != self.steps or not getattr(pl_module, "iterative", True):
            self._check(trainer, pl_module)  # the state returned is always a checked one
        assert self.best is not None
        final = len(self.history) - 1
        respected = self.violations == 0
        final_score = self.target.distance(self._forget_value(self.history[final])) if self.target else 0.0
        returned = final
        if not respected or final_score > self.best[0] + 1e-12:
            pl_module.model.load_state_dict(self.best[2])  # type: ignore[union-attr, arg-type]
            returned = self.best[1]
        after = self.history[returned]
        reached = self.target.reached(self._forget_value(after)) if self.target else None
        if not getattr(pl_module, "iterative", True) and self.stopped_by != "guard":
            self.stopped_by = "one-shot"
        self.outcome = UnlearningOutcome(
            method=type(pl_module).__name__, request=repr(trainer.datamodule.forget),  # type: ignore[union-attr]
            target=None if self.target is None else asdict(self.target), reached=reached, stopped_by=self.stopped_by,
            steps=self.steps, budget_steps=self.budget, returned_step=int(after["step"]), restored=returned != final,
            check_time_s=self.check_time, checks=len(self.history), guard=self.guard, guard_events=list(self.guard_events),
            rollbacks=list(self.rollbacks), backoffs=list(self.backoffs), speedups=list(self.speedups),
            budget_extensions=self.extensions,
            before={k: v for k, v in self.before.items() if k != "ref"},
            after={k: v for k, v in after.items() if k != "step"},
            history=list(self.history),
        )
        pl_module.outcome = self.outcome  # type: ignore[assignment]
        self._report(pl_module)
        self.best = None  # drop the saved weights

    def _report(self, pl_module: LightningModule) -> None:
        outcome = self.outcome
        assert outcome is not None
        if outcome.guard_events and trainer_rank_zero(pl_module):
            event = outcome.guard_events[0]
            if "non_finite_loss" in event:
                what = f"the loss became non-finite at step {int(event['step'])}"
            else:
                what = (f"the utility guard was violated from step {int(event['step'])} (held-out accuracy on retained classes"
                        f" {event['retained_heldout']:.3f} < limit {event['limit']:.3f})")
            warnings.warn(
                f"{outcome.method}: {what}; returned the checked state of step {outcome.returned_step}, the best that"
                " respected the guard.",
                UnlearningTargetWarning, stacklevel=2,
            )
        if outcome.reached is False:
            forget = self._forget_value(outcome.after)
            hint = _hint(outcome)
            message = (
                f"{outcome.method} did not reach its target ({outcome.target['description']}): it reached a forget"  # type: ignore[index]
                f" accuracy of {forget:.3f} after {outcome.steps} steps (stopped by {outcome.stopped_by}). {hint}"
            )
            if self.strict:
                raise UnlearningTargetError(message)
            if trainer_rank_zero(pl_module):
                warnings.warn(message, UnlearningTargetWarning, stacklevel=2)

    # ---------------------------------------------------------------- state
    _RESUMED = ("violations", "violated_since", "violated_values", "rolled_back", "rollbacks", "extensions",
                "budget", "next_check", "interval", "backoffs", "lr_scale", "base_lrs", "speedups", "lr_changed_at")

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run decides by: counters, history, the best checked state (weights and
        optimiser states: a checkpoint taken mid-run must still be able to return it)."""
        state = {"steps": self.steps, "before": dict(self.before), "history": [dict(h) for h in self.history],
                 "guard_events": [dict(e) for e in self.guard_events],
                 **{name: copy.deepcopy(getattr(self, name)) for name in self._RESUMED}}
        if self.best is not None:
            state["best"] = {"score": self.best[0], "index": self.best[1], "model": self.best[2], "optimizers": self.best[3]}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = int(state_dict["steps"])
        self.before = dict(state_dict["before"])
        self.history = [dict(h) for h in state_dict["history"]]
        self.guard_events = [dict(e) for e in state_dict["guard_events"]]
        for name in self._RESUMED:
            if name in state_dict:  # checkpoints of earlier versions lack them: the defaults of a fresh run
                setattr(self, name, copy.deepcopy(state_dict[name]))
        best = state_dict.get("best")
        self._resumed_best = None if best is None else (float(best["score"]), int(best["index"]), best["model"], best["optimizers"])


def _copy_optimizers(trainer: Trainer) -> list[dict[str, Any]]:
    return [copy.deepcopy(optimizer.state_dict()) for optimizer in trainer.optimizers]


def _copy_state(pl_module: LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}  # type: ignore[union-attr]


def trainer_rank_zero(pl_module: LightningModule) -> bool:
    trainer = pl_module._trainer
    return trainer is None or trainer.global_rank == 0


def _hint(outcome: UnlearningOutcome) -> str:
    if getattr(outcome, "stopped_by", "") == "one-shot":
        return "It is a closed-form method: it cannot iterate towards the target; try an iterative method (e.g. NegGradPlus, UGradSLPlus)."
    slowed = f" (also at learning rates halved {len(outcome.backoffs)} times)" if outcome.backoffs else ""
    if outcome.stopped_by in ("guard", "non-finite loss"):
        return (f"It damaged the retained classes before it forgot{slowed}: try a method that also descends on the retain"
                " set (e.g. NegGradPlus, UGradSLPlus), or a larger `guard` if that damage is acceptable.")
    if outcome.target and outcome.target["kind"] == "instance" and outcome.after.get("forget", 1.0) < outcome.target["aim"]:
        return "It forgot too much between two checks: try a smaller `lr` or `check_every`."
    sped = f" (its learning rates were already doubled {len(outcome.speedups)} times)" if outcome.speedups else ""
    return f"Try a larger `max_steps`{sped} or `lr`."
