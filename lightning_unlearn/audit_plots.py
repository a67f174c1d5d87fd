"""The per-example audit's plots: the ε histograms over D_f and the φ of the worst examples (matplotlib).

Imported by :func:`lightning_unlearn.forgetting_audit.audit` when it writes a report folder;
matplotlib (the ``bench`` extra) is imported inside the functions that draw. Every PNG is written
through a temporary sibling and a rename (:func:`~lightning_unlearn.atomic.atomic_path`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_unlearn._optional import require
from lightning_unlearn.atomic import atomic_path

EPSILON_FILE = "forgetting_audit_epsilon.png"
EPSILON_SHOWN = 5.0  # the histogram's last bin holds every ε >= this (the challenge caps ε at 50)
COLORS = {"unlearned": "#d62728", "retrained": "#1f77b4", "reference": "#1f77b4"}


def worst_file(name: str) -> str:
    """The file name of a row's worst-examples plot (the name with anything but letters, digits, ``.-_`` as ``_``)."""
    safe = re.sub(r"[^\w.-]", "_", name).lower()
    return f"forgetting_audit_worst_{safe}.png"


def _pyplot() -> Any:
    require("matplotlib", "The audit's plots").use("Agg", force=False)
    return require("matplotlib.pyplot", "The audit's plots")


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def plot_epsilons(path: Path, epsilons: Mapping[str, Sequence[float]], reference: Sequence[float] | None,
                  reference_name: str, max_epsilon: float, k: int) -> Path:
    """One panel per row: the histogram of its per-example ε over D_f, the reference's ε as an outline.

    ``max_epsilon`` (a dashed line) is where the NeurIPS buckets end: an example beyond it scores 0.
    """
    plt = _pyplot()
    names = list(epsilons)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    width = 0.25
    edges = [i * width for i in range(int(EPSILON_SHOWN / width) + 2)]
    clip = lambda values: [min(float(v), EPSILON_SHOWN + width / 2) for v in values]  # noqa: E731
    for ax, name in zip(axes.flat, names):
        values = clip(epsilons[name])
        weights = [1.0 / len(values)] * len(values)
        ax.hist(values, bins=edges, weights=weights, color=COLORS["unlearned"], alpha=0.7, label=name)
        if reference is not None:
            ref = clip(reference)
            ax.hist(ref, bins=edges, weights=[1.0 / len(ref)] * len(ref), histtype="step", lw=1.8,
                    color=COLORS["reference"], label=reference_name)
        ax.axvline(max_epsilon, ls="--", color="k", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"per-example ε on D_f (last bin: ε ≥ {EPSILON_SHOWN:g})", fontsize=8)
        ax.legend(fontsize=7, loc="upper center")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of D_f")
    fig.suptitle(f"NeurIPS 2023 per-example ε, K = {k} models per kind (dashed: ε beyond which an example scores 0)",
                 fontsize=10)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_worst(path: Path, name: str, worst: Sequence[Mapping[str, Any]], unlearned: Any, retrained: Any,
               reference_name: str = "retrained") -> Path:
    """Small multiples: for each of the ``worst`` examples, φ under every unlearned and every retrained model.

    ``unlearned`` and ``retrained`` are ``(K, N)`` φ over D_f; each entry of ``worst`` holds the
    example's ``position`` in D_f, its dataset ``index``, ``epsilon`` and attack ``score``.
    """
    plt = _pyplot()
    cols = min(3, len(worst))
    rows = max(1, math.ceil(len(worst) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.4 * rows), squeeze=False)
    for ax, example in zip(axes.flat, worst):
        j = int(example["position"])
        for y, (label, values, color) in enumerate(((name, unlearned[:, j], COLORS["unlearned"]),
                                                    (reference_name, retrained[:, j], COLORS["retrained"]))):
            xs = [float(v) for v in values]
            ax.scatter(xs, [y] * len(xs), s=28, alpha=0.75, color=color, label=label)
        ax.set_yticks([0, 1], [name, reference_name], fontsize=8)
        ax.set_ylim(-0.6, 1.6)
        ax.set_xlabel("φ = log p_y / (1 − p_y)", fontsize=8)
        ax.set_title(f"example {example['index']}: ε = {example['epsilon']:.2f}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    for ax in axes.flat[len(worst):]:
        ax.set_visible(False)
    fig.suptitle(f"{name}: the {len(worst)} forgotten examples told apart best (one dot per model)", fontsize=10)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


__all__ = ["EPSILON_FILE", "plot_epsilons", "plot_worst", "worst_file"]
