"""What an unlearning run achieved (:class:`UnlearningOutcome`), and the warning or error of a target not reached."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class UnlearningTargetWarning(UserWarning):
    """An unlearning run ended without reaching its request's target, or its guard restored a state."""


class UnlearningTargetError(RuntimeError):
    """``strict=True`` and the unlearning run did not reach its request's target."""


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
        """One line: target, whether reached, accuracies (and an instance-wise request's membership AUC) before →
        after, steps and wall time."""
        accs = ", ".join(
            f"{k} {self.before[k]:.3f}→{self.after[k]:.3f}" for k in ("forget", "forget_heldout", "membership", "retained_heldout")
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
        ) + "".join(f" Note: {note.rstrip('.')}." for note in self.notes)


def _hint(outcome: UnlearningOutcome) -> str:
    if getattr(outcome, "stopped_by", "") == "one-shot":
        return "It is a closed-form method: it cannot iterate towards the target; try an iterative method (e.g. NegGradPlus, UGradSLPlus)."
    slowed = f" (also at learning rates halved {len(outcome.backoffs)} times)" if outcome.backoffs else ""
    if outcome.stopped_by in ("guard", "non-finite loss"):
        return (f"It damaged the retained classes before it forgot{slowed}: try a method that also descends on the retain"
                " set (e.g. NegGradPlus, UGradSLPlus), or a larger `guard` if that damage is acceptable.")
    if outcome.target and outcome.target["kind"] == "instance" and _past_aim(outcome):
        return "It forgot too much between two checks: try a smaller `lr` or `check_every`."
    sped = f" (its learning rates were already doubled {len(outcome.speedups)} times)" if outcome.speedups else ""
    return f"Try a larger `max_steps`{sped} or `lr`."


def _past_aim(outcome: UnlearningOutcome) -> bool:
    """Whether an instance-wise run ended past its aim: it forgot more than a model that never saw D_f."""
    target, after = outcome.target, outcome.after
    assert target is not None
    value = after.get("membership" if target.get("statistic") == "membership" else "forget", 1.0)
    return value < target["aim"]
