"""Per-example audit of one or more unlearning methods against a bank of retrained models.

:func:`audit` builds (or reuses) a :class:`~lightning_unlearn.model_bank.ModelBank` and scores,
for every method, the K unlearned models against the K retrained ones, per example:

* U-LiRA-style attack on D_f: AUC, TPR at 1% and 5% FPR (ideal 0.5, 0.01, 0.05);
* the NeurIPS 2023 challenge score: forgetting quality F and F × RA ratio × TA ratio;
* KLOM percentiles on D_f, a D_r sample and D_t (ideal 0);
* retain-set privacy: the same attack on the D_r sample, for the originals (before) and the unlearned models (after).

Two reference rows come with every report: ``original`` (the untouched originals scored as if
they were the unlearned models: far from ideal) and ``retrain (half vs half)`` (one half of the
retrained models against the other: ideal up to the sampling noise of K/2 models). A method is
judged against these two rows, not against the nominal ideal.

Every row also names its worst forgotten examples (highest per-example ε, ties broken by the
per-example attack score); a report folder holds two kinds of plots besides the JSON and the
Markdown (matplotlib, the ``bench`` extra): the histogram of the per-example ε over D_f of every
row, with the reference's as an outline, and φ under every unlearned and retrained model for the
worst examples of each row (:mod:`lightning_unlearn.audit_plots`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightning_unlearn._optional import require
from lightning_unlearn.atomic import atomic_path, write_json_atomic
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.metrics.functional.per_example import (
    klom,
    neurips_epsilons,
    neurips_forgetting_score,
    neurips_max_epsilon,
    ulira,
    ulira_scores,
)
from lightning_unlearn.model_bank import BANK_SPLITS, ModelBank

ORIGINAL_ROW = "original"
REFERENCE_ROW = "retrain (half vs half)"
WORST = 6  # worst examples named (and plotted) per row


def score_outputs(
    unlearned: dict[str, dict[str, Any]],
    retrained: dict[str, dict[str, Any]],
    before: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every per-example score of ``unlearned`` against ``retrained`` (stacked bank outputs, see :meth:`ModelBank.outputs`)."""
    phi = lambda out, split: out[split]["phi"].double()  # noqa: E731
    acc = lambda out, split: float(out[split]["accuracy"].mean())  # noqa: E731
    row: dict[str, Any] = {"ulira_forget": ulira(phi(unlearned, "forget"), phi(retrained, "forget"))}
    k = min(phi(unlearned, "forget").shape[0], phi(retrained, "forget").shape[0])
    if k >= 3:
        row["neurips"] = neurips_forgetting_score(
            phi(unlearned, "forget"),
            phi(retrained, "forget"),
            retain_accuracy=(acc(unlearned, "retain"), acc(retrained, "retain")),
            test_accuracy=(acc(unlearned, "test"), acc(retrained, "test")),
        )
    row["klom"] = {split: klom(phi(unlearned, split), phi(retrained, split)) for split in BANK_SPLITS}
    row["retain_privacy"] = {"after": ulira(phi(unlearned, "retain"), phi(retrained, "retain"))}
    if before is not None:
        row["retain_privacy"]["before"] = ulira(phi(before, "retain"), phi(retrained, "retain"))
    row["accuracy"] = {split: acc(unlearned, split) for split in BANK_SPLITS}
    return row


def worst_examples(unlearned: Tensor, retrained: Tensor, indices: Tensor, count: int = WORST) -> tuple[Tensor, list[dict[str, Any]]]:
    """The per-example ε of ``unlearned`` vs ``retrained`` φ ``(K, N)``, and the ``count`` examples told apart best.

    Ranked by ε (:func:`~lightning_unlearn.metrics.functional.neurips_epsilons`), ties (e.g. at the
    cap, 50) broken by the per-example attack score: the mean U-LiRA log-likelihood ratio of the
    unlearned models minus that of the retrained ones, with Gaussians fitted on all the models.
    Each entry: ``{"index": dataset index, "position": column in D_f, "epsilon": ..., "score": ...}``.
    """
    u, r = unlearned.double(), retrained.double()
    eps = neurips_epsilons(u, r)
    llr = ulira_scores(u, r, torch.cat([u, r]))
    score = llr[: u.shape[0]].mean(0) - llr[u.shape[0]:].mean(0)
    order = sorted(range(eps.numel()), key=lambda j: (-float(eps[j]), -float(score[j])))[:count]
    return eps, [{"index": int(indices[j]), "position": j, "epsilon": float(eps[j]), "score": float(score[j])}
                 for j in order]


def _half(outputs: dict[str, dict[str, Any]], part: int) -> dict[str, dict[str, Any]]:
    def take(value: Any) -> Any:
        if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == k:
            return value[part::2]
        return value

    k = outputs["forget"]["phi"].shape[0]
    return {split: {name: take(v) if name in ("phi", "margin", "probs", "accuracy") else v for name, v in d.items()}
            for split, d in outputs.items()}


def bank_pair(bank: ModelBank, row: str, options: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """``(unlearned, retrained, before)`` outputs of one audit row from ``bank`` (built where missing).

    ``row``: :data:`ORIGINAL_ROW` (the originals against the retrained models), :data:`REFERENCE_ROW` (one half of
    the retrained models against the other, ``before`` None) or a method name (its unlearned models, with ``options``).
    """
    retrained, original = bank.outputs("retrained"), bank.outputs("original")
    if row == ORIGINAL_ROW:
        return original, retrained, original
    if row == REFERENCE_ROW:
        return _half(retrained, 0), _half(retrained, 1), None
    return bank.outputs("unlearned", row, **(options or {})), retrained, original


def bank_row(bank: ModelBank, row: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scores of one audit row (see :func:`bank_pair`), as :func:`audit` reports them."""
    unlearned, retrained, before = bank_pair(bank, row, options)
    return score_outputs(unlearned, retrained, before=before)


def summary_columns(row: dict[str, Any]) -> dict[str, float]:
    """The four numbers of a row that a one-line summary shows: U-LiRA AUC and TPR at 1% FPR on D_f, the NeurIPS
    score (F × RA ratio × TA ratio) and the median KLOM on D_f."""
    out = {"ulira_auc": row["ulira_forget"]["auc"], "ulira_tpr@1%fpr": row["ulira_forget"]["tpr@1%fpr"]}
    if "score" in row.get("neurips", {}):
        out["neurips_score"] = row["neurips"]["score"]
    out["klom_p50_forget"] = row["klom"]["forget"]["p50"]
    return out


def audit(
    datamodule: UnlearningDataModule,
    methods: str | list[str] | dict[str, dict[str, Any]],
    bank_size: int = 8,
    model: str = "lenet5",
    max_epochs: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    retain_sample: int = 1000,
    cache_dir: str | os.PathLike = ".lightning_unlearn/banks",
    output: str | os.PathLike | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Audit ``methods`` on ``datamodule``'s request with per-example scores from a bank of ``bank_size`` models per kind.

    Args:
        datamodule: the request.
        methods: a method name, a list of names, or ``{name: options}`` (options passed to the method).
        bank_size: K, models of each kind (>= 8: the half-vs-half reference needs two folds of 2 models per half).
        model, max_epochs, lr, seed: the originals' and retrained models' recipe and first seed.
        retain_sample: D_r examples scored.
        cache_dir: where the bank is kept (keyed by the request, recipe, seeds and library version).
        output: a folder to write ``forgetting_audit.json``, ``forgetting_audit.md`` and the plots to (each file
            atomically; the plots need matplotlib, the ``bench`` extra, checked before any training); None: nothing written.
        trainer_kwargs: Trainer arguments for every training run.

    Returns:
        ``{"bank": {...}, "methods": {...}, "rows": {name: scores}, "markdown": str}`` (and, with ``output``,
        ``"plots"``: ``{"epsilon": file name, "worst": {row: file name}}``). Each row's ``worst_forget`` names its worst forgotten examples.
    """
    if isinstance(methods, str):
        methods = {methods: {}}
    elif isinstance(methods, (list, tuple)):
        methods = {m: {} for m in methods}
    if not isinstance(methods, dict) or not methods:
        raise ValueError(f"`methods` must be a method name, a non-empty list of names or {{name: options}}, got {methods!r}.")
    if not isinstance(bank_size, int) or isinstance(bank_size, bool) or bank_size < 8:
        raise ValueError(
            f"`bank_size` must be an integer >= 8, got {bank_size!r}: the retrained reference splits the bank in two"
            " halves, and the per-example attack fits each half in two folds of at least 2 models."
        )
    if output is not None:
        try:  # the report folder's plots: before any training, not after it
            require("matplotlib", "The audit's plots")
        except ImportError as err:
            raise ValueError(f"{err} (or leave `output` unset: the scores themselves need no extra).") from None
    bank = ModelBank(datamodule, None, k=bank_size, model=model, max_epochs=max_epochs, lr=lr, seed=seed,
                     retain_sample=retain_sample, cache_dir=cache_dir, trainer_kwargs=trainer_kwargs, verbose=verbose)
    pairs = {row: bank_pair(bank, row) for row in (ORIGINAL_ROW, REFERENCE_ROW)}
    for name, options in methods.items():
        pairs[name] = bank_pair(bank, name, options)
    rows: dict[str, Any] = {}
    epsilons: dict[str, Tensor] = {}
    for name, (unlearned, against, before) in pairs.items():
        rows[name] = score_outputs(unlearned, against, before=before)
        epsilons[name], rows[name]["worst_forget"] = worst_examples(
            unlearned["forget"]["phi"], against["forget"]["phi"], against["forget"]["indices"])
    report: dict[str, Any] = {
        "bank": {"directory": str(bank.directory), "key": bank.key, "k": bank_size, **bank.key_payload},
        "methods": {n: o for n, o in methods.items()},
        "rows": rows,
    }
    if output is not None:
        from lightning_unlearn import audit_plots

        out = Path(output)
        others = [n for n in rows if n != REFERENCE_ROW]
        plots: dict[str, Any] = {"epsilon": audit_plots.plot_epsilons(
            out / audit_plots.EPSILON_FILE, {n: epsilons[n].tolist() for n in others}, epsilons[REFERENCE_ROW].tolist(),
            REFERENCE_ROW, neurips_max_epsilon(bank_size), bank_size).name, "worst": {}}
        for name in others:
            unlearned, against, _ = pairs[name]
            plots["worst"][name] = audit_plots.plot_worst(
                out / audit_plots.worst_file(name), name, rows[name]["worst_forget"], unlearned["forget"]["phi"],
                against["forget"]["phi"]).name
        report["plots"] = plots
    report["markdown"] = to_markdown(report)
    if output is not None:
        write_json_atomic(out / "forgetting_audit.json", {n: v for n, v in report.items() if n != "markdown"})
        with atomic_path(out / "forgetting_audit.md") as tmp:
            tmp.write_text(report["markdown"])
    return report


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per method and reference)."""
    head = ("| | U-LiRA AUC (D_f) | TPR@1%FPR | TPR@5%FPR | NeurIPS F | NeurIPS score | KLOM p50 D_f | KLOM p50 D_r"
            " | KLOM p50 D_t | D_r attack AUC before → after |")
    lines = [f"Per-example audit, K = {report['bank']['k']} models per kind (bank {report['bank']['key'][:16]}).", "",
             head, "|" + "---|" * 10]
    for name, row in report["rows"].items():
        u, n, kl, rp = row["ulira_forget"], row.get("neurips", {}), row["klom"], row["retain_privacy"]
        before = f"{rp['before']['auc']:.3f} → " if "before" in rp else ""
        cells = [
            name, f"{u['auc']:.3f}", f"{u['tpr@1%fpr']:.3f}", f"{u['tpr@5%fpr']:.3f}",
            f"{n['forgetting_quality']:.3f}" if n else "–", f"{n['score']:.3f}" if n else "–",
            f"{kl['forget']['p50']:.3f}", f"{kl['retain']['p50']:.3f}", f"{kl['test']['p50']:.3f}",
            f"{before}{rp['after']['auc']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Ideal: the `{REFERENCE_ROW}` row (Retrain against retrained models, up to sampling noise);"
              f" `{ORIGINAL_ROW}` is the untouched model."]
    lines += ["", "Worst forgotten examples (dataset index: per-example ε):", ""]
    for name, row in report["rows"].items():
        worst = ", ".join(f"{e['index']}: {e['epsilon']:.2f}" for e in row.get("worst_forget", []))
        lines.append(f"- {name}: {worst or '–'}")
    plots = report.get("plots")
    if plots:
        lines += ["", f"![per-example ε on D_f]({plots['epsilon']})", "", "φ under every model for the worst examples:", ""]
        lines += [f"- [{name}]({file})" for name, file in plots["worst"].items()]
    return "\n".join(lines) + "\n"


__all__ = ["audit", "bank_pair", "bank_row", "score_outputs", "summary_columns", "to_markdown", "worst_examples"]
