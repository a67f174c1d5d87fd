"""What serving a request means (:class:`Target`, derived from the forget specification) and the samples
every check measures: D_f, D_tf (class-wise), D_ref (held-out samples of the forgotten samples' classes)
and the guard's held-out samples of retained classes, each a fixed subset of at most :data:`CHECK_CAP`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, Subset, TensorDataset

from lightning_unlearn.request.options import CHECK_CAP, CLASS_TARGET, STANDARD_ERRORS, TargetOption

if TYPE_CHECKING:
    from lightning_unlearn.data.datamodule import UnlearningDataModule


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


def _fixed_subset(indices: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Positions of at most ``cap`` samples among ``indices`` (seeded; the same on every process)."""
    if indices.size <= cap:
        return np.arange(indices.size)
    return np.sort(np.random.default_rng(seed).permutation(indices.size)[:cap])


def check_loader(dm: UnlearningDataModule, split: str, keep: np.ndarray | None = None) -> DataLoader | None:
    """A loader over a fixed subset (at most :data:`CHECK_CAP`) of ``split`` restricted to ``keep`` classes."""
    if not dm.has_split(split):
        return None
    labels = dm.split_targets(split)  # type: ignore[arg-type]
    positions = np.arange(labels.size) if keep is None else np.flatnonzero(np.isin(labels, keep))
    if positions.size == 0:
        return None
    positions = positions[_fixed_subset(positions, CHECK_CAP, dm.seed)]
    subset = Subset(dm.split_dataset(split), positions.tolist())  # type: ignore[arg-type]
    # Materialised once (at most CHECK_CAP samples): every check is then forward passes only. In batches of the
    # training batch size, a size the user's device runs well: a check's forward then costs about a third of a
    # training step per sample, as the cadence assumes (CHECK_SPACING). At the evaluation batch of 512 it cost
    # more than half on a CPU (measured, All-CNN on 28x28 inputs, 1024 samples: 870 ms at 512, 420 ms at 64, a
    # training step 1643 ms; 2 threads: 403, 189 and 733 ms).
    xs, ys = zip(*((item[0], item[1]) for item in subset))
    dataset = TensorDataset(torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys, dtype=torch.long))
    return DataLoader(dataset, batch_size=dm.batch_size, shuffle=False, num_workers=0)


def check_sets(dm: UnlearningDataModule, num_classes: int, target_option: TargetOption,
               guard: float | None) -> tuple[dict[str, DataLoader], np.ndarray | None]:
    """The checked samples of a set-up data module's request: ``(split -> loader, forget_weights)``.

    ``forget`` always; ``forget_heldout`` (D_tf) for a class-wise request; ``retained_heldout`` with a
    guard; ``ref`` for an instance-wise target, with ``forget_weights``, D_f's class frequencies (the
    target weighs D_ref's per-class accuracies by them).

    Raises:
        MisconfigurationException: the guard or the target needs held-out samples that do not exist.
    """
    from lightning_unlearn.data.forget import ClassForget

    k = num_classes
    forget_weights = None
    classwise = isinstance(dm.forget, ClassForget)
    forget_classes = np.asarray(sorted(set(int(c) for c in dm.split_targets("forget"))))
    retained = np.setdiff1d(np.arange(k), forget_classes) if classwise else np.arange(k)
    loaders = {"forget": check_loader(dm, "forget")}
    if classwise:
        heldout = check_loader(dm, "test_forget") if dm.has_split("test_forget") else None
        if heldout is not None:
            loaders["forget_heldout"] = heldout
    guard_loader = check_loader(dm, "ref", retained) or check_loader(dm, "test", retained)
    if guard is not None:
        if guard_loader is None:
            raise MisconfigurationException("The utility guard needs held-out samples of retained classes; none exist.")
        loaders["retained_heldout"] = guard_loader
    if target_option is not None and not classwise:
        ref = check_loader(dm, "ref", forget_classes)
        if ref is None:
            raise MisconfigurationException(
                f"The target of the request {dm.forget!r} is the accuracy before unlearning on held-out samples of"
                " the forgotten samples' classes, but the data module has none: build it with `ref_fraction` > 0"
                " (e.g. 0.1), or pass `target=None`."
            )
        loaders["ref"] = ref
        counts = np.bincount(dm.split_targets("forget"), minlength=k).astype(float)  # type: ignore[arg-type]
        forget_weights = counts / counts.sum()
    return loaders, forget_weights  # type: ignore[return-value]


def derive_target(target_option: TargetOption, loaders: dict[str, DataLoader], before: dict[str, float]) -> Target | None:
    """The request's :class:`Target` from its check sets (:func:`check_sets`) and the accuracies before unlearning."""
    if target_option is None:
        return None
    n = len(loaders["forget"].dataset)  # type: ignore[arg-type]
    if "ref" not in loaders:  # class-wise
        aim = CLASS_TARGET if target_option == "auto" else float(target_option)  # type: ignore[arg-type]
        where = "D_f and D_tf" if "forget_heldout" in loaders else "D_f"
        return Target("class", aim, 0.0, f"forget accuracy <= {aim:.3f} on {where}")
    aim = before["ref"] if target_option == "auto" else float(target_option)  # type: ignore[arg-type]
    tolerance = STANDARD_ERRORS * math.sqrt(max(aim * (1.0 - aim), 0.25 / n) / n)
    return Target(
        "instance", aim, tolerance,
        f"forget accuracy within {tolerance:.3f} of {aim:.3f} (the held-out accuracy of the same classes before unlearning)",
    )
