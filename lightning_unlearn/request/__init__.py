"""Serve a deletion request: the target it implies, the utility guard, the step budget and the outcome.

Every :class:`~lightning_unlearn.methods.base.UnlearningMethod` runs, by default, until its request
is served rather than for a fixed number of epochs. :class:`ServeRequest` (attached by the method's
``configure_callbacks``, so it applies to ``unlearn()``, the CLI and a user's own ``Trainer.fit``):

* derives the **target** from the forget specification, before the first step:

  - class-wise: the accuracy on D_f, and on the test samples of the forgotten classes (D_tf), at
    most ``target`` (default 0.01);
  - sub-class, random or explicit indices: D_f's losses like those the model gave, *before
    unlearning*, to held-out samples (D_ref) of the same classes, weighted like D_f's classes: the
    membership AUC (:func:`membership_auc`) at 0.5, reached within two of its standard errors, in
    either direction -- forgetting too much is a failure too, since a membership attack sees it (a
    number as ``target`` aims at that forget accuracy instead, within two binomial standard errors);

* keeps the **utility guard**: the held-out accuracy on retained classes (D_ref, or the test
  samples of retained classes when there is no D_ref) may not fall more than ``guard`` below its
  value before unlearning; a state that violates it is never returned, and
  :data:`GUARD_PATIENCE` consecutive violating checks end the run unless the retained accuracy is
  climbing back over the last check interval (methods that descend on D_r may wreck it first, then
  recover); the first
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
  when the forget accuracy is about to reach its aim, after a return and while the guard is violated, but
  never more than :data:`CHECKS_PER_INTERVAL` checks per regular interval on average over the run (plus
  :data:`FREE_CHECKS`): the checks' share stays at most about a quarter, counted in samples passed, not
  seconds, so every machine and process checks at the same steps; every check reads every checked
  sample's logits, each process its share, gathered (:func:`~lightning_unlearn.passes.logits_pass`), so 1 and N
  processes decide alike;
* goes back once to the best checked state (weights and optimiser state), then checks eight times
  as often for two intervals, when the forget accuracy crossed its aim between two checks and landed past the target
  or through a guard the previous check respected: the state that serves the request lay between
  those checks (methods whose schedule overshoots on purpose, SCRUB, set ``rolls_back = False``);
* ends the run at the target, at a guard violation or at the **step budget**
  (``max_steps``, default ``max(max_epochs`` passes, ``min_steps)``, granted once more to a run on
  course to its target or, having crossed its aim, climbing back to the guard's limit in time,
  :data:`BUDGET_EXTENSIONS`), then restores the best
  checked state that respected the guard (the state before unlearning is one of them) and hands
  the caller an :class:`UnlearningOutcome`; a target not reached is an
  :class:`UnlearningTargetWarning`, or an :class:`UnlearningTargetError` with ``strict=True``.
"""

from lightning_unlearn.request.callback import ServedMethod, ServeRequest, trainer_rank_zero
from lightning_unlearn.request.options import (
    BACKOFF_FACTOR,
    BACKOFFS,
    BUDGET_EXTENSIONS,
    CHECK_CAP,
    CHECK_SPACING,
    CHECKS_PER_INTERVAL,
    CLASS_TARGET,
    FREE_CHECKS,
    GUARD_PATIENCE,
    REQUEST_OPTIONS,
    SPEEDUP_FACTOR,
    SPEEDUP_MARGIN,
    SPEEDUPS,
    STANDARD_ERRORS,
    TargetOption,
    validate_request_options,
)
from lightning_unlearn.request.outcome import UnlearningOutcome, UnlearningTargetError, UnlearningTargetWarning, _hint
from lightning_unlearn.request.rule import RequestRule, _copy_optimizers, _copy_state, _load_state
from lightning_unlearn.request.target import (
    MEMBERSHIP,
    Target,
    _fixed_subset,
    check_loader,
    check_sets,
    check_values,
    derive_target,
    membership_auc,
)

__all__ = [
    "BACKOFFS", "BACKOFF_FACTOR", "BUDGET_EXTENSIONS", "CHECK_CAP", "CHECK_SPACING", "CHECKS_PER_INTERVAL", "CLASS_TARGET",
    "FREE_CHECKS", "GUARD_PATIENCE",
    "REQUEST_OPTIONS", "SPEEDUPS", "SPEEDUP_FACTOR", "SPEEDUP_MARGIN", "STANDARD_ERRORS", "RequestRule", "ServeRequest",
    "ServedMethod", "Target", "TargetOption", "UnlearningOutcome", "UnlearningTargetError", "UnlearningTargetWarning",
    "MEMBERSHIP", "check_loader", "check_sets", "check_values", "derive_target", "membership_auc", "trainer_rank_zero", "validate_request_options",
    "_copy_optimizers", "_copy_state", "_load_state", "_fixed_subset", "_hint",
]
