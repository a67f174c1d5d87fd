"""The request options a method forwards to its :class:`~lightning_unlearn.request.ServeRequest`, their
validation, and the constants of the rule that serves a request (cadence, patience, back-off, speed-up)."""

from __future__ import annotations

from typing import Any, Literal

TargetOption = float | Literal["auto"] | None
REQUEST_OPTIONS = ("target", "guard", "strict", "max_steps", "min_steps", "check_every")
"""The arguments a method forwards to its :class:`ServeRequest` (same names, same defaults)."""
CLASS_TARGET = 0.01
"""Default class-wise target: forget accuracy at most 1% on D_f and D_tf."""
STANDARD_ERRORS = 2.0
"""Instance-wise tolerance, in standard errors: of the membership AUC (D_f against D_ref), or, for a target
given as a forget accuracy, binomial ones of the forget set's size."""
GUARD_PATIENCE = 3
"""A run ends after this many consecutive checks violate the guard, spanning at least ``GUARD_PATIENCE - 1``
check intervals, unless the retained accuracy rose over the last check interval of the violation by more
than one checked sample (methods that descend on D_r may recover)."""
CHECK_SPACING = 2.0
"""Default cadence: a check every ``CHECK_SPACING × checked samples / batch size`` steps, the batch of a
step being global (the per-process batch × the number of processes). A check is a forward pass over
the checked samples, a step a forward and backward pass over a batch (about three forwards), so
regular checks cost about a sixth of a one-pass-per-step method's time; sooner near the aim."""
CHECKS_PER_INTERVAL = 2.0
"""At most this many checks per regular check interval on average over a run (counted from its start, plus
:data:`FREE_CHECKS`): checks brought forward near the aim, after a return or while the guard is violated
spend what the regular cadence left unused. A check is a forward pass over the checked samples; a regular
interval of steps is ``CHECK_SPACING`` × those samples in training batches, about three forwards each: so
checks cost at most about a quarter of a one-pass-per-step method's time and less for methods with two
passes per step (measured before this cap: SULI on All-CNN, MNIST-5k class 7, 53 checks in 189 steps at an
interval of 24, 61% of the run's time; the checks' share computed from the samples passed, 62%)."""
FREE_CHECKS = 2
"""Checks a run may make on top of :data:`CHECKS_PER_INTERVAL` (the first two come early, see ``_schedule``)."""
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
