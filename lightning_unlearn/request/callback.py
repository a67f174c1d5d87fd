"""The :class:`ServeRequest` callback: ties the request's rule (:class:`~lightning_unlearn.request.rule.RequestRule`)
to a Trainer's run: the check sets at set-up, the checks during training, the step budget, the state
returned at the end, the :class:`~lightning_unlearn.request.UnlearningOutcome`, and the state a
checkpoint carries (see :mod:`lightning_unlearn.request`)."""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader

from lightning_unlearn.passes import logits_pass
from lightning_unlearn.request.options import CHECK_SPACING, TargetOption, validate_request_options
from lightning_unlearn.request.outcome import UnlearningOutcome, UnlearningTargetError, UnlearningTargetWarning, _hint
from lightning_unlearn.request.rule import RequestRule, _copy_optimizers, _copy_state, _load_state
from lightning_unlearn.request.target import MEMBERSHIP, Target, check_sets, check_values, derive_target, reference_losses

if TYPE_CHECKING:
    from lightning_unlearn.data.datamodule import UnlearningDataModule


@runtime_checkable
class ServedMethod(Protocol):
    """What :class:`ServeRequest` needs of the module it serves: an
    :class:`~lightning_unlearn.methods.base.UnlearningMethod` (recognised by these attributes; the
    methods import this package, so it does not import them)."""

    method_name: str
    model: nn.Module
    num_classes: int


class ServeRequest(RequestRule, Callback):
    """Run an unlearning method until its request is served, within the utility guard (see :mod:`lightning_unlearn.request`).

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
        self.reference: tuple[np.ndarray, np.ndarray] | None = None  # D_ref's losses and weights before unlearning
        self.history: list[dict[str, float]] = []
        self.guard_events: list[dict[str, float]] = []
        self.best: tuple[float, int, dict[str, Any], list[dict[str, Any]]] | None = None
        # (score, history index, checked state (see _copy_state), optimiser states)
        self.last_check = -1  # the step of the last check of a trained state
        self.next_check = 0
        self.interval = 1
        self.check_time = 0.0
        self.stopped_by = "trainer"  # the Trainer's own limits (max_epochs, max_steps, max_time), unless set below
        self.violations = 0  # consecutive checks that violated the guard
        self.violated_since = 0  # the step of the first of them
        self.rolled_back = False  # whether the run went back to its best state once (see _roll_back)
        self.rollbacks: list[dict[str, float]] = []
        self.extensions = 0  # times the default budget was extended (see _extend_budget)
        self.backoffs: list[dict[str, float]] = []  # returns to the best state with smaller steps (see _back_off)
        self.lr_scale = 1.0
        self.speedups: list[dict[str, float]] = []  # learning rates doubled (see _speed_up)
        self.lr_changed_at = 0
        self.base_lrs: list[list[float]] = []  # every optimiser's learning rates before the first step
        self._resumed_best: tuple[float, int, dict[str, Any], list[dict[str, Any]]] | None = None
        self.first_budget = 0

    # ---------------------------------------------------------------- set-up
    def _datamodule(self, trainer: Trainer, pl_module: LightningModule) -> UnlearningDataModule:
        """The method's data module (its one accessor, :attr:`UnlearningMethod.datamodule`), which holds the request."""
        try:
            return pl_module.datamodule  # type: ignore[attr-defined,return-value]
        except MisconfigurationException as err:
            raise MisconfigurationException(
                f"{str(err).rstrip('.')}, or build the method with `target=None, guard=None` (the request's target and"
                " guard are measured on the data module's splits)."
            ) from None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not isinstance(pl_module, ServedMethod):
            raise MisconfigurationException(f"ServeRequest serves unlearning methods; {type(pl_module).__name__} is not one.")
        self._reset()
        if not self.checking:
            return
        dm = self._datamodule(trainer, pl_module)
        dm.setup("fit")
        self.loaders, self.forget_weights = check_sets(dm, pl_module.num_classes, self.target_option, self.guard)

    # ---------------------------------------------------------------- checks
    def _measure(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        start = time.perf_counter()
        outputs = {split: logits_pass(pl_module.model, loader, pl_module.num_classes, trainer)  # type: ignore[arg-type]
                   for split, loader in self.loaders.items()}
        if self.reference is None and self.forget_weights is not None and self.target_option == "auto":
            self.reference = reference_losses(outputs, self.forget_weights)  # the first check: before unlearning
        values = check_values(outputs, self.forget_weights, self.reference)
        self.check_time += time.perf_counter() - start
        return values

    def record_inner_run(self, steps: int, stopped_by: str) -> None:
        """A method that iterates outside the Trainer's loop (PS's head on cached embeddings) reports its steps."""
        self.steps, self.stopped_by = int(steps), stopped_by

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
            self.history = [{"step": 0.0, **self.before}]
        self.target = derive_target(self.target_option, self.loaders, self.before, self.forget_weights)
        if resumed and self._resumed_best is not None:
            self.best, self._resumed_best = self._resumed_best, None
            return  # the cadence (interval, next check) came with the checkpoint
        self.best = (self.target.distance(self.history[-1]) if self.target else 0.0,
                     len(self.history) - 1, _copy_state(pl_module), _copy_optimizers(trainer))
        checked = sum(len(loader.dataset) for loader in self.loaders.values())  # type: ignore[arg-type]
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
        if self.target is not None and not self.guard_events and self.target.aim_crossed(self.history[-1]):
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
        final_score = self.target.distance(self.history[final]) if self.target else 0.0
        returned = final
        if not respected or final_score > self.best[0] + 1e-12:
            _load_state(pl_module, self.best[2])
            returned = self.best[1]
        after = self.history[returned]
        # the returned state is the model before unlearning (a closed form changed it before its first check)
        unchanged = getattr(pl_module, "iterative", True) and after["step"] == 0
        reached = self.target.reached(after, before_unlearning=unchanged) if self.target else None
        if not getattr(pl_module, "iterative", True) and self.stopped_by != "guard":
            self.stopped_by = "one-shot"
        self.outcome = UnlearningOutcome(
            method=type(pl_module).__name__, request=repr(trainer.datamodule.forget),  # type: ignore[union-attr]
            target=None if self.target is None else asdict(self.target), reached=reached, stopped_by=self.stopped_by,
            steps=self.steps, budget_steps=self.budget, returned_step=int(after["step"]), restored=returned != final,
            check_time_s=self.check_time, checks=len(self.history), guard=self.guard, guard_events=list(self.guard_events),
            rollbacks=list(self.rollbacks), backoffs=list(self.backoffs), speedups=list(self.speedups),
            budget_extensions=self.extensions,
            before=dict(self.before),
            after={k: v for k, v in after.items() if k != "step"},
            history=list(self.history),
        )
        if reached and unchanged and self.target is not None:
            met = "already showed no membership of D_f" if self.target.shows_no_membership(after) else "already met the target"
            self.outcome.notes.append(
                f"the model before unlearning {met} ({self.target.describe(after)}): it is returned unchanged")
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
            assert self.target is not None
            hint = _hint(outcome)
            limitation = getattr(pl_module, "limitation", None)
            if limitation:
                outcome.notes.append(f"known limit: {limitation}")
                hint = f"{hint} A known limit of {outcome.method}: {limitation}"
            message = (
                f"{outcome.method} did not reach its target ({outcome.target['description']}): it reached"  # type: ignore[index]
                f" {self.target.describe(outcome.after)} after {outcome.steps} steps (stopped by {outcome.stopped_by}). {hint}"
            )
            if self.strict:
                raise UnlearningTargetError(message)
            if trainer_rank_zero(pl_module):
                warnings.warn(message, UnlearningTargetWarning, stacklevel=2)

    # ---------------------------------------------------------------- state
    _RESUMED = ("violations", "violated_since", "rolled_back", "rollbacks", "extensions",
                "budget", "next_check", "interval", "backoffs", "lr_scale", "base_lrs", "speedups", "lr_changed_at")

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run decides by: counters, history, the best checked state (weights and
        optimiser states: a checkpoint taken mid-run must still be able to return it)."""
        state = {"steps": self.steps, "before": dict(self.before), "history": [dict(h) for h in self.history],
                 "guard_events": [dict(e) for e in self.guard_events],
                 "reference": None if self.reference is None else [r.tolist() for r in self.reference],
                 **{name: copy.deepcopy(getattr(self, name)) for name in self._RESUMED}}
        if self.best is not None:
            state["best"] = {"score": self.best[0], "index": self.best[1], **self.best[2], "optimizers": self.best[3]}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = int(state_dict["steps"])
        self.before = dict(state_dict["before"])
        self.history = [dict(h) for h in state_dict["history"]]
        self.guard_events = [dict(e) for e in state_dict["guard_events"]]
        reference = state_dict.get("reference")
        if reference is None and self.target_option == "auto" and "ref" in self.before and MEMBERSHIP not in self.before:
            raise MisconfigurationException(
                "The checkpoint's instance-wise request was served by an earlier target, the forget accuracy alone; the"
                " default target is now the membership AUC, measured against the model before unlearning, which the"
                f" checkpoint lacks: resume with `target={self.before['ref']:.4f}` (that earlier target) or start the run again."
            )
        self.reference = None if reference is None else (np.asarray(reference[0]), np.asarray(reference[1]))
        for name in self._RESUMED:
            if name in state_dict:  # checkpoints of earlier versions lack them: the defaults of a fresh run
                setattr(self, name, copy.deepcopy(state_dict[name]))
        best = state_dict.get("best")
        self._resumed_best = None if best is None else (
            float(best["score"]), int(best["index"]), {"model": best["model"], "method": best.get("method", {})},
            best["optimizers"])  # (checkpoints of earlier versions hold the classifier's state alone)


def trainer_rank_zero(pl_module: LightningModule) -> bool:
    trainer = pl_module._trainer
    return trainer is None or trainer.global_rank == 0
