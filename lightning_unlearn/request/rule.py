"""The rule a request is served by: every check's verdict (:meth:`RequestRule.judge`), the guard's
patience, the cadence of the checks, the roll-back, the back-off and speed-up of the learning rates, and
the budget extension (see :mod:`lightning_unlearn.request`).

:class:`RequestRule` holds the decisions; :class:`~lightning_unlearn.request.ServeRequest` (the callback)
holds the run's state, measures the checks (:meth:`ServeRequest._measure`) and ties the rule to the Trainer.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader

from lightning_unlearn.optim import learning_rates, scale_learning_rates, scale_schedule
from lightning_unlearn.request.options import (
    BACKOFF_FACTOR,
    BACKOFFS,
    BUDGET_EXTENSIONS,
    CHECKS_PER_INTERVAL,
    FREE_CHECKS,
    GUARD_PATIENCE,
    SPEEDUP_FACTOR,
    SPEEDUP_MARGIN,
    SPEEDUPS,
    TargetOption,
)
from lightning_unlearn.request.target import Target


class RequestRule:
    """The decisions of :class:`~lightning_unlearn.request.ServeRequest`, on the checks it measures.

    Every decision reads and updates the state below (set by the callback's ``_reset``, or restored
    from a checkpoint); :meth:`_check` is the one entry point of a check.
    """

    target_option: TargetOption
    guard: float | None
    max_steps: int | None
    target: Target | None
    steps: int
    budget: int | None
    first_budget: int
    loaders: dict[str, DataLoader]
    before: dict[str, float]
    history: list[dict[str, float]]
    guard_events: list[dict[str, float]]
    best: tuple[float, int, dict[str, Any], list[dict[str, Any]]] | None
    last_check: int
    next_check: int
    interval: int
    check_every: int | None
    stopped_by: str
    violations: int
    violated_since: int
    rolled_back: bool
    rollbacks: list[dict[str, float]]
    extensions: int
    backoffs: list[dict[str, float]]
    lr_scale: float
    speedups: list[dict[str, float]]
    lr_changed_at: int
    base_lrs: list[list[float]]

    def _measure(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        raise NotImplementedError  # the callback measures the check sets (ServeRequest._measure)

    def _forget_value(self, values: dict[str, float]) -> float:
        """The checked value the run drives towards the target's aim (:meth:`Target.value`)."""
        return self.target.value(values) if self.target else values["forget"]

    def judge(self, values: dict[str, float]) -> tuple[float, bool, bool]:
        """``(distance to the target, guard respected, aim crossed)`` of checked accuracies ``values``.

        The one rule every check decides by (also used by methods that check a state themselves,
        e.g. PS on its cached embeddings).
        """
        respected = self.guard is None or values["retained_heldout"] >= self.before["retained_heldout"] - self.guard - 1e-12
        if self.target is None:
            return 0.0, respected, False
        return self.target.distance(values), respected, self.target.aim_crossed(values)

    def _check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Measure, record, keep the best state, and decide whether the run ends here."""
        values = self._measure(trainer, pl_module)
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
                self.violated_since = self.steps
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

    def _set_lrs(self, trainer: Trainer, factor: float, rates: list[list[dict[str, Any]]] | None = None) -> None:
        """Every optimiser's learning rates times ``factor``: their current rates, or ``rates`` (those of the
        moment before a restore: the saved states hold the rates of their time), and every schedule's.

        Where a schedule has got to is kept: the rates stay ``lr_scale`` times the schedule's own, at
        this step and every later one (the schedule's ``base_lrs`` are scaled too, see
        :func:`~lightning_unlearn.optim.scale_schedule`); without a schedule, ``lr_scale`` times the
        rates the run started with.
        """
        for i, optimizer in enumerate(trainer.optimizers):
            scale_learning_rates(optimizer, factor, None if rates is None else rates[i])
        for config in getattr(trainer, "lr_scheduler_configs", []):
            scale_schedule(config.scheduler, factor)  # a schedule would otherwise set the old rates again

    def _recovering(self) -> bool:
        """Whether the held-out retained accuracy climbs back: above the lowest value of the violation's last
        check interval (at least its last ``GUARD_PATIENCE`` checks) by more than one checked sample (the
        check set is fixed, so a rise is not sampling noise).

        Over an interval of steps, not the last few checks: near the aim checks come every few steps, and a
        run mending the retained classes at a sample per check looks flat over three of them (measured:
        SULI on All-CNN, MNIST-5k class 5, 0.920 -> 0.945 over 31 steps, 0.942 -> 0.945 over its last
        three checks); from the lowest value, since a run can dip once more before it recovers."""
        return self._recovering_since(self._violation_low()["retained_heldout"])

    def _violation_low(self) -> dict[str, float]:
        """The check of the lowest held-out retained accuracy in the violation's last check interval."""
        violating = [h for h in self.history if h["step"] >= self.violated_since]
        window = [h for h in violating if h["step"] >= violating[-1]["step"] - self.interval]
        window = violating[-max(len(window), GUARD_PATIENCE):]
        return min(reversed(window), key=lambda h: h["retained_heldout"])  # the latest of equal lows

    def _should_roll_back(self, values: dict[str, float], respected: bool, crossed: bool) -> bool:
        """The aim was crossed between two checks, past the target or through the guard: go back once.

        Only when the previous check respected the guard: the damage then happened within the last
        interval, next to the state that serves the request. A run already violating it before the
        crossing (it wrecked the retained classes first) goes on: it may recover, and going back
        would replay the same path.
        """
        if not crossed or self.rolled_back or self.best is None or self.target is None or self.violations:
            return False
        served = respected and self.target.reached(values)
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
        _load_state(pl_module, state)
        rates = [learning_rates(optimizer) for optimizer in trainer.optimizers]
        for optimizer, saved in zip(trainer.optimizers, optimizers):
            optimizer.load_state_dict(copy.deepcopy(saved))
        self._set_lrs(trainer, factor, rates)  # the saved states hold the rates of their time
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
        self.violations = 0
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
        returned = self._returned_recently()  # the run went back: the state it missed is near
        if returned:
            step = max(1, self.interval // 8)
        if soon:
            self.next_check = self.steps + self._within_allowance(max(1, self.interval // 4))
            return
        if self.target is not None and len(self.history) >= 2:
            prev, last = self.history[-2], self.history[-1]
            span = last["step"] - prev["step"]
            rate = (self._forget_value(prev) - self._forget_value(last)) / max(span, 1.0)
            remaining = self._forget_value(last) - self.target.aim
            if rate > 0 and remaining > 0:
                floor = 1 if returned else max(1, self.interval // 8)  # after a return, down to every step
                step = int(min(step, max(floor, math.floor(0.5 * remaining / rate))))
        self.next_check = self.steps + self._within_allowance(max(step, 1))

    def _within_allowance(self, step: int) -> int:
        """``step`` steps to the next check, or more where a check that soon would exceed the run's allowance of
        :data:`CHECKS_PER_INTERVAL` checks per regular interval (plus :data:`FREE_CHECKS`): checks brought forward
        spend what the regular cadence left unused, and no more, so the checks' share of the run stays bounded
        (counted in checks and steps, never in seconds: the same run on any machine, and on every process,
        checks at the same steps). Never beyond the regular interval; a cadence the user set is kept.

        The close checks of the two intervals after the run's one roll-back are outside the allowance: the
        state that serves the request lies between the two checks around the crossing, and an instance-wise
        target is a window a run can pass between two checks again (measured: SalUn, LeNet-5, random 10%,
        seed 1, served at step 9 after its roll-back with them, not served in 196 steps without)."""
        if self.check_every or self._within_two_intervals(self.rollbacks):
            return step
        checks = len(self.history) - 1  # checks of trained states so far (the next one is checks + 1)
        earliest = math.ceil((checks + 1 - FREE_CHECKS) * self.interval / CHECKS_PER_INTERVAL)
        return max(step, min(earliest - self.steps, self.interval))

    def _returned_recently(self) -> bool:
        """Whether the run went back to its best state (a roll-back or a back-off) within the last two check
        intervals: the state it missed lies within an interval of the state it went back to (at a halved rate,
        two), so checks come eight times as often there and at the regular cadence after it. Checking closely
        for the rest of the run cost All-CNN runs on MNIST-5k more than training did (measured: SULI on
        class 9, a check every 3 to 6 steps for the 71 steps after its second back-off, at a regular interval
        of 25)."""
        return self._within_two_intervals([*self.rollbacks, *self.backoffs])

    def _within_two_intervals(self, events: list[dict[str, float]]) -> bool:
        """Whether the latest of ``events`` (returns to the best state, each with its ``step``) happened less than
        two check intervals ago."""
        return bool(events) and self.steps - max(e["step"] for e in events) < 2 * self.interval

    def _extend_budget(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        """At the default budget, a run that is on course gets it once more (:data:`BUDGET_EXTENSIONS`).

        On course, either of:

        * the guard respected at the last check, and the forget accuracy falling at a rate (over the
          last check interval) that reaches the aim within another budget;
        * a recovering run: the aim crossed, the guard violated, and the held-out retained accuracy
          climbing back (:meth:`_recovering`) at a rate, from its lowest value, that reaches the guard's
          limit within another budget. Methods that also descend on D_r forget first and mend the retained classes
          after (measured: SULI on All-CNN, MNIST-5k class 5, forget accuracy 0 from step 160, the
          retained accuracy back from 0.920 to 0.942 against a limit of 0.947 when its 200 steps ran out).

        A budget the user set (``max_steps``) is never extended.
        """
        if self.max_steps is not None or self.target is None or self.extensions >= BUDGET_EXTENSIONS:
            return False
        if self.last_check != self.steps:
            self._check(trainer, pl_module)
            if trainer.should_stop:
                return False
        if self.violations:
            on_course = self._recovering_in_time()
        else:
            pace = self._pace()
            on_course = pace is not None and pace[0] > 0 and pace[1] > 0 and pace[1] / pace[0] <= self.first_budget
        if not on_course:
            return False
        self.extensions += 1
        self.budget = self.steps + self.first_budget  # type: ignore[assignment]
        return True

    def _recovering_in_time(self) -> bool:
        """Whether a run violating the guard has crossed its aim and climbs back to the guard's limit, at
        its pace since its lowest check, within another default budget (see :meth:`_extend_budget`)."""
        last = self.history[-1]
        if self.target is None or self.guard is None or not self.target.aim_crossed(last):
            return False
        low = self._violation_low()
        if not self._recovering_since(low["retained_heldout"]):
            return False
        limit = self.before["retained_heldout"] - self.guard
        rate = (last["retained_heldout"] - low["retained_heldout"]) / max(last["step"] - low["step"], 1.0)
        return rate > 0 and (limit - last["retained_heldout"]) / rate <= self.first_budget

    def _recovering_since(self, value: float) -> bool:
        """Whether the last held-out retained accuracy is above ``value`` by more than one checked sample."""
        n = len(self.loaders["retained_heldout"].dataset)  # type: ignore[arg-type]
        return self.history[-1]["retained_heldout"] > value + 1.0 / n


def _copy_optimizers(trainer: Trainer) -> list[dict[str, Any]]:
    return [copy.deepcopy(optimizer.state_dict()) for optimizer in trainer.optimizers]


def _copy_state(pl_module: LightningModule) -> dict[str, Any]:
    """A checked state: the classifier's weights and buffers (``"model"``) and the method's own trainable
    parameters outside it (``"method"``, e.g. Boundary Expanding's shadow unit). Both go back together: a
    classifier restored beside a shadow unit trained on for 80 more steps fits D_f to the shadow class at
    once, and the run learns almost nothing after it (measured: digits, LeNet-5, class 3, forget accuracy
    0.973 -> 0.945 in the 116 steps after a back-off, against 0.973 -> 0 in 16 steps before it)."""
    model = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}  # type: ignore[union-attr]
    method = {name: p.detach().clone() for name, p in pl_module.named_parameters()
              if p.requires_grad and not name.startswith("model.")}
    return {"model": model, "method": method}


def _load_state(pl_module: LightningModule, state: dict[str, Any]) -> None:
    """Put a state of :func:`_copy_state` back."""
    pl_module.model.load_state_dict(state["model"])  # type: ignore[union-attr, operator]
    parameters = dict(pl_module.named_parameters())
    with torch.no_grad():
        for name, value in state["method"].items():
            parameters[name].copy_(value)
