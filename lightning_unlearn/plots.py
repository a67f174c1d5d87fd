"""Rendering of an :class:`~lightning_unlearn.evaluation.UnlearningReport`: a Markdown table and PNG plots.

The report's own methods (``to_markdown``, ``save``) call this module: it reads a report by its
attributes (:class:`ReportData`, a protocol) and imports nothing of :mod:`lightning_unlearn.evaluation`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from lightning_unlearn._optional import require


class ModelData(Protocol):
    """What the rendering reads of one model's metrics (a :class:`~lightning_unlearn.evaluation.ModelMetrics`)."""

    accuracy: dict[str, float]
    unlearning_accuracy: float
    class_accuracy: list[float | None]
    mia_efficacy: float | None
    loss_mia: dict[str, float] | None


class ReportData(Protocol):
    """What the rendering reads of a report (a :class:`~lightning_unlearn.evaluation.UnlearningReport`)."""

    splits: list[str]
    num_classes: int
    forget_classes: list[int] | None
    forget_spec: dict[str, Any] | None
    models: Mapping[str, ModelData]
    average_gap: float | None
    entropy_distance: dict[str, dict[str, float]]
    prototype_similarity: dict[str, list[float]]
    prediction_kl: dict[str, float]
    prediction_kl_split: str | None
    loss_mia_split: str | None
    parameter_change: dict[str, Any] | None
    relearning: dict[str, dict[str, Any]]
    runtime_s: float | None
    evaluation_time_s: float
    notes: list[str]

    @property
    def unlearned(self) -> ModelData: ...

SPLIT_LABELS = {
    "forget": "D_f",
    "retain": "D_r",
    "test": "D_t",
    "test_forget": "D_tf",
    "test_retain": "D_tr",
    "new": "D_new",
    "ref": "D_ref",
    "train": "D_train",
}
COLORS = {"unlearned": "#d62728", "original": "#7f7f7f", "reference": "#1f77b4"}


def _fmt(value: float | None, percent: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def report_markdown(report: ReportData) -> str:
    """The report as Markdown: one row per metric, one column per model, plus the gap to the reference."""
    roles = [r for r in ("unlearned", "original", "reference") if r in report.models]
    has_ref = "reference" in report.models
    header = ["metric", *roles] + (["gap (unlearned − reference)"] if has_ref else [])
    rows: list[list[str]] = []

    def add(name: str, values: dict[str, float | None], percent: bool = True) -> None:
        row = [name, *(_fmt(values.get(r), percent) for r in roles)]
        if has_ref:
            u, ref = values.get("unlearned"), values.get("reference")
            row.append(_fmt(abs(u - ref), percent) if u is not None and ref is not None else "–")
        rows.append(row)

    for split in report.splits:
        add(f"Acc {SPLIT_LABELS.get(split, split)} (%)", {r: report.models[r].accuracy.get(split) for r in roles})
    add("UA = 1 − Acc D_f (%)", {r: report.models[r].unlearning_accuracy for r in roles})
    if report.unlearned.mia_efficacy is not None:
        add("MIA-efficacy (%)", {r: report.models[r].mia_efficacy for r in roles})
    if report.unlearned.loss_mia is not None:
        split = SPLIT_LABELS.get(report.loss_mia_split or "", report.loss_mia_split)
        add(f"loss MIA, D_f vs {split} (%)", {r: report.models[r].loss_mia["mean"] for r in roles if report.models[r].loss_mia})
    for split in report.splits if has_ref else []:
        add(f"Entropy Distance {SPLIT_LABELS.get(split, split)}", {r: report.entropy_distance.get(r, {}).get(split) for r in roles}, False)
    if report.prototype_similarity:
        add("prototype similarity (mean)", {r: sum(v) / len(v) for r, v in report.prototype_similarity.items()}, False)
    if report.prediction_kl:
        split = SPLIT_LABELS.get(report.prediction_kl_split or "", report.prediction_kl_split)
        add(f"prediction KL on {split}", dict(report.prediction_kl), False)
    lines = [
        "# Unlearning evaluation",
        "",
        f"Forget request: `{report.forget_spec}`; {report.num_classes} classes.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    if report.average_gap is not None:
        lines.append(f"**Average gap** (Acc D_f, D_r, D_t, MIA-efficacy): {100 * report.average_gap:.2f} percentage points.")
    if report.parameter_change is not None:
        pc = report.parameter_change
        lines.append(f"**Parameter change** vs original: L1 = {pc['l1']:.4g} (head: {pc['l1_head']:.4g}).")
    for role, curve in report.relearning.items():
        accs = ", ".join(f"{100 * a:.1f}" for a in curve["forget_accuracy"])
        lines.append(f"**Relearning** ({role}, Acc {SPLIT_LABELS.get(curve['probe_split'], curve['probe_split'])} % per epoch): {accs}; relearn epochs: {curve['relearn_epochs']}.")
    if report.runtime_s is not None:
        lines.append(f"**Unlearning runtime**: {report.runtime_s:.2f} s.")
    lines.append(f"Evaluation took {report.evaluation_time_s:.2f} s.")
    lines.extend(f"_Note: {n}_" for n in report.notes)
    table_end = lines.index("", 5)
    return "\n".join(lines[:table_end]) + "\n\n" + "\n\n".join(lines[table_end + 1 :]) + "\n"


def _figure(width: float = 7.0, height: float = 4.0):  # type: ignore[no-untyped-def]
    require("matplotlib", "Plotting").use("Agg", force=False)
    plt = require("matplotlib.pyplot", "Plotting")
    return plt.subplots(figsize=(width, height), dpi=110)


def _grouped_bars(ax, labels: list[str], series: dict[str, list[float]]) -> None:  # type: ignore[no-untyped-def]
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (role, values) in enumerate(series.items()):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(labels))]
        bars = ax.bar(xs, values, width, label=role, color=COLORS.get(role))
        for bar, value in zip(bars, values):
            if not math.isnan(value):
                ax.annotate(f"{value:.0f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels)


def plot_accuracy(report: ReportData, path: Path) -> Path:
    """Accuracy per split, the unlearned model beside the original and reference models."""
    fig, ax = _figure()
    splits = report.splits
    series = {r: [100 * m.accuracy[s] for s in splits] for r, m in report.models.items()}
    if report.unlearned.mia_efficacy is not None:
        labels = [SPLIT_LABELS.get(s, s) for s in splits] + ["MIA-eff."]
        for r, m in report.models.items():
            series[r].append(100 * (m.mia_efficacy or math.nan))
    else:
        labels = [SPLIT_LABELS.get(s, s) for s in splits]
    _grouped_bars(ax, labels, series)
    ax.set_ylabel("accuracy / MIA-efficacy (%)")
    ax.set_ylim(0, 112)
    title = "Accuracy per split"
    if report.average_gap is not None:
        title += f" (average gap to reference: {100 * report.average_gap:.2f} pp)"
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    fig.clf()
    return path


def plot_class_accuracy(report: ReportData, path: Path) -> Path:
    """Test accuracy per class; the forgotten classes are shaded."""
    fig, ax = _figure()
    classes = list(range(report.num_classes))
    _grouped_bars(ax, [str(c) for c in classes], {r: [math.nan if a is None else 100 * a for a in m.class_accuracy] for r, m in report.models.items()})
    for c in report.forget_classes or []:
        ax.axvspan(c - 0.45, c + 0.45, color="#ffdd57", alpha=0.35, zorder=0)
    ax.set_xlabel("class (shaded: forgotten)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 112)
    ax.set_title("Test accuracy per class")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    fig.clf()
    return path


def plot_prototype_similarity(report: ReportData, path: Path) -> Path:
    """Per-class cosine similarity of the head rows to the reference model's (1 = same prototype)."""
    fig, ax = _figure()
    classes = list(range(report.num_classes))
    for role, values in report.prototype_similarity.items():
        ax.plot(classes, values, marker="o", label=role, color=COLORS.get(role))
    for c in report.forget_classes or []:
        ax.axvspan(c - 0.45, c + 0.45, color="#ffdd57", alpha=0.35, zorder=0)
    low = min(v for values in report.prototype_similarity.values() for v in values)
    ax.set_ylim(max(-1.0, low - 0.1 * (1.0 - low) - 0.01), 1.0 + 0.1 * (1.0 - low) + 0.005)
    ax.set_xticks(classes, [str(c) for c in classes])
    ax.set_xlabel("class (shaded: forgotten)")
    ax.set_ylabel("cosine similarity of head rows")
    ax.set_title("Prototype similarity to the retrained model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    fig.clf()
    return path


ROLE_LABELS = {
    "unlearned": "unlearned",
    "original": "original (before unlearning)",
    "reference": "reference (retrained)",
}
ROLE_MARKERS = {"unlearned": "o", "original": "s", "reference": "^"}
ROLE_LINESTYLES = {"unlearned": "-", "original": ":", "reference": "--"}


def relearning_axis_labels(forget_classes: list[int] | None, class_wise: bool | None = None) -> tuple[str, str]:
    """``(x label, y label)`` of a relearning curve, true for the request.

    Class-wise forgetting relearns on D_new without the forgotten classes and probes D_tf; a
    sub-class, random or index request has no forgotten class: it relearns on all of D_new and
    probes D_f (see :func:`lightning_unlearn.relearning.relearn`). ``class_wise`` defaults to
    whether ``forget_classes`` names any class.

    Example:
        >>> relearning_axis_labels([3])[0]
        'relearning epoch (fine-tuning on D_new without class 3)'
        >>> relearning_axis_labels(None)
        ('relearning epoch (fine-tuning on D_new, all classes)', 'accuracy on D_f, the forgotten training samples (%)')
    """
    if not (bool(forget_classes) if class_wise is None else class_wise):
        return ("relearning epoch (fine-tuning on D_new, all classes)",
                "accuracy on D_f, the forgotten training samples (%)")
    if not forget_classes:
        names = "the forgotten classes"
    else:
        names = ("classes " if len(forget_classes) > 1 else "class ") + ", ".join(str(c) for c in forget_classes)
    return (f"relearning epoch (fine-tuning on D_new without {names})",
            f"accuracy on D_tf, the test samples of {names} (%)")


def draw_relearning(ax, report: ReportData) -> None:  # type: ignore[no-untyped-def]
    """Draw the report's relearning curves into ``ax`` (one colour, marker and line style per model)."""
    from matplotlib.ticker import MaxNLocator

    thresholds = set()
    for role, curve in report.relearning.items():
        accs = [100 * a for a in curve["forget_accuracy"]]
        ax.plot(range(len(accs)), accs, marker=ROLE_MARKERS.get(role, "D"), linestyle=ROLE_LINESTYLES.get(role, "-."),
                label=ROLE_LABELS.get(role, role), color=COLORS.get(role))
        if curve.get("threshold") is not None:
            thresholds.add(float(curve["threshold"]))
    for threshold in sorted(thresholds):
        ax.axhline(100 * threshold, ls="--", color="k", lw=0.8, label=f"recovery threshold ({100 * threshold:.0f}%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xlabel, ylabel = relearning_axis_labels(report.forget_classes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_ylim(-3, 103)
    ax.set_title("Relearning test (epoch 0: before relearning)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=2, frameon=False)


def plot_relearning(report: ReportData, path: Path) -> Path:
    """Forget accuracy after every relearning epoch (epoch 0 = before relearning)."""
    fig, ax = _figure(7.0, 4.6)
    draw_relearning(ax, report)
    fig.tight_layout()
    fig.savefig(path)
    fig.clf()
    return path


def save_plots(report: ReportData, folder: Path) -> list[Path]:
    """Write every plot that the report has data for into ``folder``; return their paths.

    Raises:
        ImportError: without matplotlib (``pip install 'lightning-unlearn[bench]'``).
    """
    plt = require("matplotlib.pyplot", "Plotting")
    paths = [plot_accuracy(report, folder / "accuracy.png"), plot_class_accuracy(report, folder / "class_accuracy.png")]
    if report.prototype_similarity:
        paths.append(plot_prototype_similarity(report, folder / "prototype_similarity.png"))
    if report.relearning:
        paths.append(plot_relearning(report, folder / "relearning.png"))
    plt.close("all")
    return paths
