"""SCRUB: teacher-student unlearning with alternating max-steps on D_f and min-steps on D_r."""

from __future__ import annotations

import copy
from typing import Any, Literal

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_unlearn.data.datamodule import TrainingData
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.checks import check_integer, check_number
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.models.classifier import OptimizerName, split_batch

Phase = Literal["max", "min"]


def scrub_schedule(max_epochs: int, msteps: int) -> list[Phase]:
    """The phase of every epoch: SCRUB epochs ``1..msteps`` are a max epoch then a min epoch, later ones min only.

    Example:
        >>> scrub_schedule(5, 2)
        ['max', 'min', 'max', 'min', 'min']
    """
    phases: list[Phase] = []
    scrub_epoch = 0
    while len(phases) < max_epochs:
        if scrub_epoch < msteps:
            phases.append("max")
        phases.append("min")
        scrub_epoch += 1
    return phases[:max_epochs]


def distill_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T²·KL(softmax(t/T) ‖ softmax(s/T))``, batch mean (Hinton et al.; SCRUB's ``DistillKL``)."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature**2


@register_method("SCRUB")
class SCRUB(UnlearningMethod):
    """SCRUB: the student (the classifier) moves away from the frozen original teacher on D_f and stays close on D_r.

    Epochs alternate as in Algorithm 1 of the paper: each of the first ``msteps`` SCRUB
    epochs is a max epoch over D_f (maximise ``KL_T(teacher ‖ student)``, i.e. minimise
    ``−KL``) followed by a min epoch over D_r (minimise ``ce_weight·CE + kd_weight·KL_T``);
    later SCRUB epochs are min epochs only (:func:`scrub_schedule`). Here ``max_epochs``
    counts every max and min epoch, and :attr:`phase_log` records ``(phase, steps)`` of the
    epochs run (saved in the checkpoint). The teacher is a frozen copy of the original model
    in eval mode; temperature 4 by default.

    Both splits are served by one ``CombinedLoader(mode="max_size")`` (DistributedSamplers are
    injected into both); an epoch consumes only its phase's split and ends when that split
    is exhausted (the other loader prefetches a few unused batches).

    Cite: Kurmanji, Triantafillou, Hayes, Triantafillou. "Towards Unbounded Machine
    Unlearning", NeurIPS 2023.

    Deviations:
        - ``max_epochs`` counts max and min epochs together (the paper's ``sgda_epochs`` is
          ``max_epochs − msteps`` when ``msteps < max_epochs``); no learning-rate decay schedule.
        - Forget and retain batches have the same batch size (the data module's).

    Args:
        model: the trained classifier (student initialisation and teacher).
        msteps: number of SCRUB epochs that start with a max epoch (>= 0).
        temperature: distillation temperature (> 0).
        ce_weight: weight γ of the cross-entropy in min-steps (>= 0).
        kd_weight: weight α of the distillation KL in min-steps (>= 0).
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: number of max and min epochs together.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Raises:
        ValueError: for ``msteps`` < 0, ``temperature`` <= 0, negative weights, or an empty retain set.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = SCRUB(LeNet5(), msteps=1, max_epochs=3)
        >>> method.schedule
        ['max', 'min', 'min']
    """

    data_need = "both"
    paper = "Towards Unbounded Machine Unlearning (SCRUB; Kurmanji et al., NeurIPS 2023)."
    limitation = (
        "it forgets in its max epochs alone (msteps=1: one pass of KL ascent on D_f); its min epochs repair D_r and"
        " forget no further, so a class the max epoch leaves standing stays at the budget, and more max epochs made the"
        " unbounded KL ascent diverge to a non-finite loss (measured: LeNet-5 on MNIST-5k, 12 of 30 class-wise requests"
        " over 3 seeds served; max and min epochs alternating for the whole budget served 1 of 2 that had failed, each run"
        " hitting a non-finite loss twice); NegGradPlus, SalUn and UGradSLPlus forget for as long as the request runs."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        max_epochs: int = 3,
        msteps: int = 1,
        temperature: float = 4.0,
        ce_weight: float = 1.0,
        kd_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs, **kwargs)
        check_integer("msteps", msteps, 0)
        check_number("temperature", temperature, "> 0", lambda v: v > 0)
        for name, value in (("ce_weight", ce_weight), ("kd_weight", kd_weight)):
            check_number(name, value, ">= 0", lambda v: v >= 0)
        self.temperature, self.ce_weight, self.kd_weight = float(temperature), float(ce_weight), float(kd_weight)
        self.schedule = scrub_schedule(max_epochs, msteps)
        self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.phase_log: list[tuple[Phase, int]] = []

    rolls_back = False
    """Its max epoch is meant to overshoot on D_f and its min epochs to repair D_r: a state checked
    mid-way through the max epoch is not one to go back to, and going back would not replay it."""

    @property
    def phase(self) -> Phase:
        """The phase of the current epoch."""
        return self.schedule[min(self.current_epoch, len(self.schedule) - 1)]

    @property
    def training_data(self) -> TrainingData:
        """Both splits, for as long as the longer lasts; an epoch consumes its phase's split only."""
        return TrainingData(("forget", "retain"))

    def on_train_epoch_start(self) -> None:
        self.phase_log.append((self.phase, 0))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        if len(self.phase_log) <= self.current_epoch:  # resumed from an epoch's last batch: no on_train_epoch_start
            self.phase_log.append((self.phase, 0))
        if batch["forget" if self.phase == "max" else "retain"] is None:
            return -1  # this phase's split is exhausted: end the epoch
        return super().on_train_batch_start(batch, batch_idx)

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        self.teacher.eval()
        phase = self.phase
        x, y = split_batch(batch["forget" if phase == "max" else "retain"])
        student = self(x)
        teacher = self.teacher(x).detach()
        kd = distill_kl(student, teacher, self.temperature)
        self.phase_log[-1] = (phase, self.phase_log[-1][1] + 1)
        if phase == "max":
            return -kd
        return self.ce_weight * F.cross_entropy(student, y) + self.kd_weight * kd

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["scrub_phase_log"] = list(self.phase_log)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.phase_log = [tuple(p) for p in checkpoint.get("scrub_phase_log", [])]  # type: ignore[misc]
