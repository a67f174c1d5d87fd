"""``evaluate``: every unlearning metric of this package for one unlearned model, in one structured report.

Each model (unlearned, original, reference) runs exactly one no-grad forward pass per split
(:func:`lightning_unlearn.outputs.predict`); all metrics of a split share those outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lightning_unlearn.atomic import publish_dir
from lightning_unlearn.metrics.functional import GAP_KEYS, average_gap, entropy_distance, prediction_kl, prototype_similarity
from lightning_unlearn.metrics.functional.accuracy import split_accuracy
from lightning_unlearn.metrics.functional.mia import loss_mia, mia_efficacy
from lightning_unlearn.metrics.functional.weights import parameter_change
from lightning_unlearn.models.anatomy import Anatomy
from lightning_unlearn.outputs import SplitOutputs, predict, predict_with_trainer
from lightning_unlearn.passes import device_of
from lightning_unlearn.plots import report_markdown, save_plots
from lightning_unlearn.relearning import RelearningResult

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

    from lightning_unlearn.data.datamodule import UnlearningDataModule

ROLES: tuple[str, ...] = ("unlearned", "original", "reference")
DEFAULT_SPLITS: tuple[str, ...] = ("forget", "retain", "test", "test_forget", "test_retain")
LOSS_MIA_SPLITS = 10
KNOWN_SPLITS: tuple[str, ...] = ("train", "forget", "retain", "test", "test_forget", "test_retain", "new", "ref")


@dataclass
class ModelMetrics:
    """The metrics of one model that need no other model."""

    accuracy: dict[str, float]
    unlearning_accuracy: float
    class_accuracy: list[float | None]
    mia_efficacy: float | None = None
    loss_mia: dict[str, float] | None = None


@dataclass
class UnlearningReport:
    """Every metric of an unlearned model, beside the original and reference models' values.

    Accuracies are fractions in [0, 1]. ``gaps`` and ``average_gap`` (mean |metric_u −
    metric_ref| over Acc D_f, Acc D_r, Acc D_t, MIA-efficacy) exist only when a reference
    (retrained) model was given; they are ``None`` otherwise, never estimated.

    Attributes:
        models: role (``unlearned``/``original``/``reference``) → :class:`ModelMetrics`.
        entropy_distance: role → split → Jensen–Shannon divergence to the reference (Eq. 14 of Prototype Surgery).
        prototype_similarity: role → per-class cosine similarity of head rows to the reference.
        prediction_kl: role → KL(S ‖ S_ref) of the predicted-class distribution on ``prediction_kl_split``.
        parameter_change: L1 (all, head) and per-parameter relative change of the unlearned vs original model.
    """

    splits: list[str]
    num_classes: int
    forget_classes: list[int] | None
    forget_spec: dict[str, Any] | None
    models: dict[str, ModelMetrics]
    gaps: dict[str, float] | None = None
    average_gap: float | None = None
    entropy_distance: dict[str, dict[str, float]] = field(default_factory=dict)
    prototype_similarity: dict[str, list[float]] = field(default_factory=dict)
    prediction_kl: dict[str, float] = field(default_factory=dict)
    prediction_kl_split: str | None = None
    loss_mia_split: str | None = None
    parameter_change: dict[str, Any] | None = None
    relearning: dict[str, dict[str, Any]] = field(default_factory=dict)
    runtime_s: float | None = None
    evaluation_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- access
    @property
    def unlearned(self) -> ModelMetrics:
        return self.models["unlearned"]

    def accuracy(self, split: str, role: str = "unlearned") -> float:
        """Accuracy of the model in ``role`` on ``split``."""
        return self.models[role].accuracy[split]

    def _gap_values(self, role: str) -> dict[str, float | None]:
        m = self.models[role]
        return {
            "forget_acc": m.accuracy.get("forget"),
            "retain_acc": m.accuracy.get("retain"),
            "test_acc": m.accuracy.get("test"),
            "mia_efficacy": m.mia_efficacy,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict. The unlearned model's scalars are also at the top level (``acc_<split>``,
        ``unlearning_accuracy``, ``mia_efficacy``, ``loss_mia``, ``average_gap``) for tables."""
        payload = asdict(self)
        top: dict[str, Any] = {f"acc_{s}": v for s, v in self.unlearned.accuracy.items()}
        top["unlearning_accuracy"] = self.unlearned.unlearning_accuracy
        if self.unlearned.mia_efficacy is not None:
            top["mia_efficacy"] = self.unlearned.mia_efficacy
        if self.unlearned.loss_mia is not None:
            top["loss_mia"] = dict(self.unlearned.loss_mia)
        if self.average_gap is not None:
            top["average_gap"] = self.average_gap
        if "unlearned" in self.entropy_distance:
            top["entropy_distance"] = dict(self.entropy_distance["unlearned"])
        if "unlearned" in self.prediction_kl:
            top["prediction_kl"] = self.prediction_kl["unlearned"]
        if "unlearned" in self.prototype_similarity:
            sims = self.prototype_similarity["unlearned"]
            top["prototype_similarity_mean"] = sum(sims) / len(sims)
        return {**top, **{k: v for k, v in payload.items() if k not in top}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        return report_markdown(self)

    def save(self, folder: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write ``report.json``, ``report.md`` and the PNG plots into ``folder``.

        Everything is written to a temporary sibling folder first and renamed into place, so the
        folder is never half-written. Returns the folder.

        Raises:
            FileExistsError: if ``folder`` exists and ``overwrite`` is False.
        """
        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise FileExistsError(f"`folder` {str(folder)!r} exists; pass overwrite=True to replace it.")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            plots = save_plots(self, tmp)
            (tmp / "report.json").write_text(self.to_json())
            (tmp / "report.md").write_text(self.to_markdown() + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots))
            publish_dir(tmp, folder, overwrite)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return folder


# ------------------------------------------------------------------- checks
def _check_models(models: dict[str, nn.Module], num_classes: int, head: str | None,
                  input_shape: Sequence[int] | None = None) -> dict[str, Anatomy]:
    anatomies: dict[str, Anatomy] = {}
    for role, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"`{role}` must be an nn.Module (the classifier), got {type(model).__name__}.")
        anatomies[role] = Anatomy(model, head=head)
        classes = anatomies[role].head.out_features
        if classes != num_classes:
            raise ValueError(
                f"`{role}` predicts {classes} classes but the data module has {num_classes}: the models and the data"
                " must share the label space."
            )
    devices = {role: device_of(m) for role, m in models.items()}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"`{r}` on {d}" for r, d in devices.items())
        raise ValueError(f"All models must be on the same device, got {where}. Move them with `.to(device)`.")
    if input_shape is not None:  # a model of other inputs than the data fails here, not deep in a forward pass
        from lightning_unlearn.methods.checks import check_model_inputs

        for role, model in models.items():
            check_model_inputs(model, input_shape, num_classes, f"`{role}`")
    return anatomies


def _check_splits(datamodule: UnlearningDataModule, splits: Sequence[str] | None) -> list[str]:
    if splits is None:
        return [s for s in DEFAULT_SPLITS if datamodule.has_split(s)]
    chosen = list(splits)
    for split in chosen:
        if split not in KNOWN_SPLITS:
            raise ValueError(f"`splits` must contain only {KNOWN_SPLITS}, got {split!r}.")
        if not datamodule.has_split(split):
            raise ValueError(f"`splits` names {split!r}, but that split of the data module is empty.")
    for required in ("forget", "retain", "test"):
        if required not in chosen:
            raise ValueError(f"`splits` must include {required!r} (needed by UA, MIA and the average gap), got {chosen}.")
    return chosen


# ----------------------------------------------------------------- evaluate
def _subset(outputs: SplitOutputs, indices: Any) -> SplitOutputs:
    """The rows of ``outputs`` whose dataset index is in ``indices`` (loader order kept)."""
    keep = torch.isin(outputs.indices, torch.as_tensor(indices, dtype=torch.long))
    emb = outputs.embeddings[keep] if outputs.embeddings is not None else None
    return SplitOutputs(outputs.logits[keep], outputs.labels[keep], outputs.indices[keep], emb)


def _model_metrics(outputs: dict[str, SplitOutputs], num_classes: int, mia: bool, loss_split: str | None, seed: int) -> ModelMetrics:
    accuracy = {s: float(split_accuracy(o.logits, o.labels)) for s, o in outputs.items()}
    test = outputs["test"]
    correct = (test.logits.argmax(1) == test.labels).double()
    counts = torch.bincount(test.labels, minlength=num_classes).double()
    hits = torch.bincount(test.labels, weights=correct, minlength=num_classes)
    class_acc = [float(h / c) if c > 0 else None for h, c in zip(hits, counts)]  # None: class absent from D_t
    metrics = ModelMetrics(accuracy, 1.0 - accuracy["forget"], class_acc)
    if mia:
        r, t, f = outputs["retain"], outputs["test"], outputs["forget"]
        metrics.mia_efficacy = float(mia_efficacy(r.logits, r.labels, t.logits, t.labels, f.logits, f.labels))
    if loss_split is not None:
        f, t = outputs["forget"], outputs[loss_split]
        mean, std = loss_mia(f.logits, f.labels, t.logits, t.labels, f.indices, t.indices, n_splits=LOSS_MIA_SPLITS, seed=seed)
        metrics.loss_mia = {"mean": float(mean), "std": float(std)}
    return metrics


def evaluate(
    unlearned: nn.Module,
    datamodule: UnlearningDataModule,
    original: nn.Module | None = None,
    reference: nn.Module | None = None,
    mia: bool = True,
    loss_mia: bool = True,
    splits: Sequence[str] | None = None,
    relearning: RelearningResult | Mapping[str, RelearningResult] | None = None,
    runtime_s: float | None = None,
    head: str | None = None,
    seed: int = 0,
    trainer: Trainer | None = None,
) -> UnlearningReport:
    """Evaluate an unlearned classifier with every metric of this package (see the docs' metric pages).

    Args:
        unlearned: the unlearned classifier.
        datamodule: the data module of the deletion request.
        original: the model before unlearning (adds its values and the parameter change).
        reference: the retrained gold standard (adds gaps, the average gap, Entropy Distance,
            prototype similarity and prediction KL). Without it these are omitted, not estimated.
        mia: compute MIA-efficacy (SVC attack; needed for the average gap).
        loss_mia: compute the loss MIA (logistic regression; D_f vs D_tf for class-wise
            forgetting, else D_f vs D_t; omitted, with a note, when either has fewer than 20 samples).
        splits: splits to score (default: forget, retain, test, and test_forget/test_retain
            when class-wise); must include forget, retain and test.
        relearning: relearning curve(s) to include (one result, or role → result).
        runtime_s: the unlearning runtime to record.
        head: dotted path of the head, when it cannot be found automatically.
        seed: seed of the loss-MIA subsampling and splits.
        trainer: run the forward passes with ``trainer.predict`` (its accelerator, device and
            precision; one device), on a copy of each model. Default: a plain no-grad loop on the
            models' own device. Both give the same outputs on one CPU process at ``32-true``.

    Returns:
        An :class:`UnlearningReport`.

    Raises:
        TypeError: if a model is not an ``nn.Module``.
        ValueError: if a model's class count differs from the data module's, the models are on
            different devices, a requested split is empty or unknown, original and unlearned
            differ in architecture, or ``trainer`` runs on several devices.

    Example:
        >>> from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
        >>> dm = UnlearningDataModule("digits", forget=ClassForget(0))
        >>> original = train_classifier(dm, max_epochs=1)
        >>> unlearned = unlearn(original, dm, method="GradientAscent", max_epochs=1)
        >>> report = evaluate(unlearned, dm, original=original, loss_mia=False)
        >>> report.average_gap is None  # no reference given
        True
    """
    start = time.perf_counter()
    models = {"unlearned": unlearned, "original": original, "reference": reference}
    models = {r: m for r, m in models.items() if m is not None}
    datamodule.setup()
    anatomies = _check_models(models, datamodule.num_classes, head, datamodule.input_shape)
    chosen = _check_splits(datamodule, splits)
    loss_split = None
    notes: list[str] = []
    if loss_mia:
        loss_split = "test_forget" if datamodule.has_split("test_forget") else "test"
        smallest = min(len(datamodule.indices["forget"]), len(datamodule.split_targets(loss_split)))  # type: ignore[arg-type]
        if smallest < 2 * LOSS_MIA_SPLITS:
            notes.append(
                f"Loss MIA omitted: it needs at least {2 * LOSS_MIA_SPLITS} samples in D_f and in the comparison split,"
                f" got {smallest}."
            )
            loss_split = None
        elif loss_split not in chosen:
            chosen.append(loss_split)
    # One forward pass per split per model; every metric below reuses these outputs. D_tf and D_tr
    # are subsets of D_t: they are sliced from the test outputs instead of being run again.
    derived = [s for s in chosen if s in ("test_forget", "test_retain")]
    loaders = {s: datamodule.dataloader(s) for s in chosen if s not in derived}  # type: ignore[arg-type]
    if trainer is None:
        outputs = {role: {s: predict(m, loader) for s, loader in loaders.items()} for role, m in models.items()}
    else:  # one Trainer.predict call per model, over every split
        outputs = {role: dict(zip(loaders, predict_with_trainer(m, list(loaders.values()), trainer)))
                   for role, m in models.items()}
    for role in outputs:
        for split in derived:
            outputs[role][split] = _subset(outputs[role]["test"], datamodule.indices[split])
        outputs[role] = {s: outputs[role][s] for s in chosen}
    report = UnlearningReport(
        splits=chosen,
        num_classes=datamodule.num_classes,
        forget_classes=datamodule.forget_classes,
        forget_spec=datamodule.forget.to_dict() if hasattr(datamodule.forget, "to_dict") else None,
        models={r: _model_metrics(o, datamodule.num_classes, mia, loss_split, seed) for r, o in outputs.items()},
        loss_mia_split=loss_split,
        runtime_s=runtime_s,
        notes=notes,
    )
    if original is not None:
        report.parameter_change = parameter_change(unlearned, original, head=anatomies["unlearned"].head_name)
    if reference is not None:
        _compare_to_reference(report, outputs, anatomies, mia)
    else:
        report.notes.append("No reference (retrained) model: gaps, Entropy Distance, prototype similarity and prediction KL omitted.")
    if relearning is not None:
        results = {"unlearned": relearning} if isinstance(relearning, RelearningResult) else dict(relearning)
        report.relearning = {role: r.to_dict() for role, r in results.items()}
    report.evaluation_time_s = time.perf_counter() - start
    return report


def _compare_to_reference(
    report: UnlearningReport, outputs: dict[str, dict[str, SplitOutputs]], anatomies: dict[str, Anatomy], mia: bool
) -> None:
    ref_out = outputs["reference"]
    kl_split = "test_forget" if "test_forget" in ref_out else "forget"
    report.prediction_kl_split = kl_split
    for role in (r for r in ROLES if r in outputs and r != "reference"):
        report.entropy_distance[role] = {s: float(entropy_distance(o.logits, ref_out[s].logits)) for s, o in outputs[role].items()}
        report.prototype_similarity[role] = prototype_similarity(
            anatomies[role].head.weight, anatomies["reference"].head.weight
        ).tolist()
        report.prediction_kl[role] = float(prediction_kl(outputs[role][kl_split].logits, ref_out[kl_split].logits))
    if not mia:
        report.notes.append("mia=False: the average gap (which includes MIA-efficacy) is omitted.")
        return
    values_u, values_r = report._gap_values("unlearned"), report._gap_values("reference")
    report.gaps = {k: abs(float(values_u[k]) - float(values_r[k])) for k in GAP_KEYS}  # type: ignore[arg-type]
    report.average_gap = float(average_gap(values_u, values_r))  # type: ignore[arg-type]
