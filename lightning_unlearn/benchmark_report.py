"""The benchmark's report: summaries over seeds with 95% intervals, ``report.md``, plots, the console table.

Every number is summarised over the replicate seeds as ``{"mean", "ci95", "std", "n"}``: the
mean, the half-width of the Student t 95% confidence interval ``t_{0.975, n-1} · s / √n``
(``None`` for a single seed), the sample standard deviation ``s`` and the number of seeds.
Gaps to Retrain are taken per seed (against the reference of the same seed), then summarised.
rich and matplotlib are imported inside the functions that draw.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_unlearn._optional import require
from lightning_unlearn.benchmark_runs import ORIGINAL, ORIGINAL_LABEL, REFERENCE, SCENARIO_TITLES, RunRecord

# Metrics shown in the Markdown table (when the evaluation report has them), in this order.
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("acc_forget", "Acc D_f"),
    ("acc_retain", "Acc D_r"),
    ("acc_test", "Acc D_t"),
    ("acc_test_forget", "Acc D_tf"),
    ("acc_test_retain", "Acc D_tr"),
    ("mia_efficacy", "MIA"),
)
# Per-example scores (``per_example_bank``), shown as they are (not in percent), after the metrics above.
PER_EXAMPLE_METRICS: tuple[tuple[str, str], ...] = (
    ("per_example/ulira_auc", "U-LiRA AUC D_f"),
    ("per_example/ulira_tpr@1%fpr", "TPR@1%FPR"),
    ("per_example/neurips_score", "NeurIPS score"),
    ("per_example/klom_p50_forget", "KLOM p50 D_f"),
)
GAP_METRICS = ("acc_forget", "acc_retain", "acc_test", "mia_efficacy")
_GAP_KEYS = {k for k, _ in TABLE_METRICS} | {"loss_mia/mean", "unlearning_accuracy"}
UNITS = {
    "metrics": "fractions in [0, 1] (report.md shows percentage points)",
    "runtime_s": "seconds (the unlearning call alone)",
    "wall_s": "seconds (the whole run: training, scoring and the relearning probe)",
    "steps": "training steps of the unlearning run (batches; 0 for one-shot methods)",
}
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p")
_LINESTYLES = ("-", "--", "-.", ":")


# -------------------------------------------------------------------------- statistics
def summarize(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "ci95", "std", "n"}`` of the finite values: mean ± ``ci95`` is the Student t 95% interval.

    ``ci95`` and ``std`` are ``None`` with fewer than two values; every field but ``n`` is ``None`` with none.

    Example:
        >>> s = summarize([1.0, 2.0, 3.0])
        >>> s["mean"], s["std"], round(s["ci95"], 4), s["n"]
        (2.0, 1.0, 2.4841, 3)
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return {"mean": None, "ci95": None, "std": None, "n": 0}
    mean = statistics.fmean(finite)
    if n == 1:
        return {"mean": mean, "ci95": None, "std": None, "n": 1}
    from scipy.stats import t

    std = statistics.stdev(finite)
    return {"mean": mean, "ci95": float(t.ppf(0.975, n - 1)) * std / math.sqrt(n), "std": std, "n": n}


def aggregate(records: Sequence[RunRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{scenario: {method: row}}`` over the seeds; every number in a row is a :func:`summarize` summary.

    A row holds ``runs`` and ``failed`` (counts), each metric of the evaluation report,
    ``gap/<metric>`` (``|metric − Retrain's metric|`` of the same seed), ``runtime_s``, ``steps``,
    ``stopped`` (``{"fired": k, "n": runs with a stopping rule}``), ``relearn_final`` and
    ``relearning`` (per epoch: ``{"mean": [...], "ci95": [...], "n": ...}``); ``error`` when every run failed.
    """
    refs = {(r.scenario, r.seed): r for r in records if r.method == REFERENCE and r.error is None}
    grouped: dict[str, dict[str, list[RunRecord]]] = {}
    for r in records:
        grouped.setdefault(r.scenario, {}).setdefault(r.method, []).append(r)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_method in grouped.items():
        for method, runs in by_method.items():
            table.setdefault(scenario, {})[method] = _row(runs, refs)
    return table


def _row(runs: list[RunRecord], refs: Mapping[tuple[str, int], RunRecord]) -> dict[str, Any]:
    ok = [r for r in runs if r.error is None]
    row: dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(ok)}
    if not ok:
        row["error"] = runs[0].error
        return row
    for key in sorted({k for r in ok for k in r.metrics}):
        row[key] = summarize([r.metrics.get(key) for r in ok])
        if key in _GAP_KEYS:
            gaps = [abs(r.metrics[key] - ref.metrics[key]) for r in ok
                    if (ref := refs.get((r.scenario, r.seed))) is not None and key in r.metrics and key in ref.metrics]
            if gaps:
                row[f"gap/{key}"] = summarize(gaps)
    row["runtime_s"] = summarize([r.runtime_s for r in ok])
    row["steps"] = summarize([r.steps for r in ok])
    row["stopped"] = {"fired": sum(r.stopped for r in ok), "n": sum(r.stop_rule for r in ok)}
    row["guard"] = {"events": sum(r.guard_events > 0 for r in ok), "n": sum(r.stop_rule for r in ok)}
    curves = [r.relearning for r in ok if r.relearning]
    if curves:
        epochs = [summarize([c[i] for c in curves]) for i in range(min(map(len, curves)))]
        row["relearn_final"] = epochs[-1]
        row["relearning"] = {"mean": [e["mean"] for e in epochs], "ci95": [e["ci95"] for e in epochs], "n": len(curves)}
    return row


# ---------------------------------------------------------------------------- Markdown
def _fmt(summary: Mapping[str, Any] | None, scale: float = 100.0, digits: int = 1) -> str:
    if not summary or summary.get("mean") is None:
        return "–"
    text = f"{scale * summary['mean']:.{digits}f}"
    return text if summary.get("ci95") is None else f"{text} ± {scale * summary['ci95']:.{digits}f}"


def label(method: str) -> str:
    """The method's name as the report shows it."""
    return ORIGINAL_LABEL if method == ORIGINAL else method


def _ordered(rows: Mapping[str, Any]) -> list[str]:
    return sorted(rows, key=lambda m: (m != REFERENCE, m != ORIGINAL, m.lower()))


def markdown(config: Mapping[str, Any], table: Mapping[str, Mapping[str, dict[str, Any]]], records: Sequence[RunRecord],
             wall_time_s: float, resumed: int = 0) -> str:
    """The Markdown report: the set-up, the units once, then one table per scenario and the failed runs."""
    seeds = list(config["seeds"])
    fixed = {role: config.get(f"{role}_seed") for role in ("data", "forget", "original", "method")}
    fixed_text = ", ".join(f"{role} seed fixed at {v}" for role, v in fixed.items() if v is not None)
    budget = "" if config.get("max_epochs") is None else f" (epochs capped at {config['max_epochs']})"
    rule = "a fixed epoch budget, no target and no guard" if not config.get("stopping", True) else (
        "each request served as by default: run until its target (class-wise: forget accuracy at most 1% on D_f and"
        " D_tf; instance-wise: forget accuracy down to the held-out accuracy of the same classes before unlearning),"
        " within the utility guard (held-out accuracy on retained classes at most 2 points below its value before)"
        " and a step budget")
    resumed_text = f" ({resumed} runs resumed from an earlier invocation)" if resumed else ""
    lines = [
        "# lightning-unlearn benchmark",
        "",
        f"{config['model']} on {config['dataset']}; the original and {REFERENCE} trained for {config['original_epochs']}"
        f" epochs; every method with its default arguments{budget}; {rule}. Replicate seeds {seeds}"
        f" (each sets the data, forget, original and method seeds{'; ' + fixed_text if fixed_text else ''});"
        f" precision {config.get('precision')}; {config.get('threads') or 'default'} intra-op thread(s);"
        f" wall time {wall_time_s:.0f} s{resumed_text}.",
        "",
        "**Units:** accuracies, MIA efficacy and gaps in percentage points; runtime in seconds; steps are optimiser"
        " steps. **Cells:** mean ± half-width of the 95% confidence interval over the seeds (Student t,"
        f" t₀.₉₇₅,ₙ₋₁·s/√n; n = {len(seeds)} unless a row says otherwise; a single value when n = 1)."
        f" `value (gap)`: the gap is |value − {REFERENCE}'s value| of the same seed. *avg gap*: the mean gap over"
        " Acc D_f, Acc D_r, Acc D_t and MIA (lower is better). *runtime*: the unlearning call alone. *steps*: optimiser"
        " steps of the unlearning fit. *target*: runs that reached their request's target / runs with a target."
        " *guard*: runs in which a check violated the utility guard (the state returned never does) / runs with a target."
        f" *relearn*: forget accuracy after {config['relearn_epochs']} relearning epoch(s) (fine-tuning on D_new:"
        " retained classes only for class-wise forgetting, probed on D_tf; all classes otherwise, probed on D_f)."
        f" *{ORIGINAL_LABEL}*: the original model scored as it is.",
    ]
    if config.get("per_example_bank"):
        k = config["per_example_bank"]
        lines += ["", f"**Per-example scores** (a bank of K = {k} originals, retrained and unlearned models per scenario"
                  " and seed; see `lightning-unlearn audit`): U-LiRA AUC and TPR at 1% FPR on D_f (ideal 0.5 and 0.01),"
                  " the NeurIPS 2023 score (ideal 1) and the median KLOM on D_f (ideal 0), each row's K unlearned models"
                  f" against the K retrained ones; {REFERENCE}'s row is one half of the retrained models against the"
                  f" other (what ideal looks like with {k // 2} models per side), the original's the K originals."]
    for scenario, rows in table.items():
        lines += ["", f"## {scenario}: {SCENARIO_TITLES.get(scenario, scenario)}", ""] + _scenario_table(rows, len(seeds))
    failed = [r for r in records if r.error is not None]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {label(r.method)} on {r.scenario} (seed {r.seed}): {r.error}" for r in failed]
    missing = [r for r in records if r.error is None and r.per_example_error is not None]
    if missing:
        lines += ["", "## Per-example scores not computed", ""] + [
            f"- {label(r.method)} on {r.scenario} (seed {r.seed}): {r.per_example_error}" for r in missing]
    return "\n".join(lines) + "\n"


def _scenario_table(rows: Mapping[str, dict[str, Any]], seeds: int) -> list[str]:
    present = [(k, title) for k, title in TABLE_METRICS if any(k in row for row in rows.values())]
    per_example = [(k, title) for k, title in PER_EXAMPLE_METRICS if any(k in row for row in rows.values())]
    header = ["method", *(t for _, t in present), "avg gap", "runtime", "steps", "target", "guard", "relearn",
              *(t for _, t in per_example)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for method in _ordered(rows):
        row = rows[method]
        if "error" in row:
            lines.append(f"| {label(method)} | failed (see below) |" + " |" * (len(header) - 2))
            continue
        name = f"**{method}** (reference)" if method == REFERENCE else label(method)
        ok = row["runs"] - row["failed"]
        cells = [name + (f" (n = {ok})" if ok != seeds else "")]
        for key, _ in present:
            gap = row.get(f"gap/{key}")
            value = _fmt(row.get(key))
            cells.append(value if gap is None or method == REFERENCE else f"{value} ({_fmt(gap)})")
        stopped = row["stopped"]
        cells += [
            _fmt(row.get("average_gap")),
            _fmt(row["runtime_s"], scale=1.0, digits=2),
            _fmt(row["steps"], scale=1.0, digits=0),
            f"{stopped['fired']}/{stopped['n']}" if stopped["n"] else "–",
            f"{row['guard']['events']}/{row['guard']['n']}" if row.get("guard", {}).get("n") else "–",
            _fmt(row.get("relearn_final")),
            *(_fmt(row.get(key), scale=1.0, digits=3) for key, _ in per_example),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def progress_line(record: RunRecord, done: int, total: int) -> str:
    """One plain line about a finished run (for logs)."""
    head = f"[{done}/{total}] {record.scenario} seed {record.seed} {label(record.method)}"
    wall = f"{record.wall_s:.1f} s" if record.wall_s is not None else "– s"
    if record.error is not None:
        return f"{head}: failed after {wall}: {record.error}"
    gap = record.metrics.get("average_gap")
    gap_text = "–" if gap is None else f"{100 * gap:.1f} pp"
    target = "–" if not record.stop_rule else ("reached" if record.stopped else "NOT reached")
    return f"{head}: avg gap {gap_text}, {record.steps} steps, target {target}, {wall}"


# ------------------------------------------------------------------------------- plots
def _styles(methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A colour, marker and line style per method, the same in every plot; Retrain and Original stand apart.

    Colours are matplotlib's tab10 (its grey left to Original); past nine methods the colours repeat
    with the next line style, and the marker cycle (12 shapes) keeps every method's combination distinct.
    """
    import matplotlib.pyplot as plt

    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # index 7 is grey
    others = [m for m in sorted(methods, key=str.lower) if m not in (REFERENCE, ORIGINAL)]
    styles = {m: {"color": palette[i % len(palette)], "marker": _MARKERS[i % len(_MARKERS)],
                  "linestyle": _LINESTYLES[(i // len(palette)) % len(_LINESTYLES)]} for i, m in enumerate(others)}
    styles[REFERENCE] = {"color": "black", "marker": "o", "linestyle": "-", "linewidth": 2.5}
    styles[ORIGINAL] = {"color": "0.45", "marker": "x", "linestyle": ":", "linewidth": 2.0}
    return styles


def draw_relearning(ax: Any, scenario: str, rows: Mapping[str, dict[str, Any]], styles: Mapping[str, dict[str, Any]],
                    forget_class: int | None = None) -> None:
    """One scenario's mean relearning curves into ``ax``; the legend, outside the axes, lists Retrain and
    Original first, then the methods from the highest final accuracy to the lowest (the order of the curves' ends).

    Only the ``class`` scenario forgets a whole class (``forget_class``): it relearns without it and probes D_tf.
    """
    from matplotlib.ticker import MaxNLocator

    from lightning_unlearn.plots import relearning_axis_labels

    curves = {m: [math.nan if v is None else 100 * v for v in r["relearning"]["mean"]]
              for m, r in rows.items() if r.get("relearning")}
    fixed = [m for m in (REFERENCE, ORIGINAL) if m in curves]

    def final(method: str) -> float:
        last = curves[method][-1] if curves[method] else math.nan
        return -math.inf if math.isnan(last) else last

    ranked = sorted((m for m in curves if m not in fixed), key=lambda m: (-final(m), m.lower()))
    for method in [*fixed, *ranked]:
        ax.plot(range(len(curves[method])), curves[method], markersize=5, label=label(method), alpha=0.9,
                **styles[method])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    class_wise = scenario == "class"
    classes = [forget_class] if class_wise and forget_class is not None else None
    xlabel, ylabel = relearning_axis_labels(classes, class_wise)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(f"relearning: {scenario}: {SCENARIO_TITLES.get(scenario, scenario)} (mean over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="final value, high to low",
              title_fontsize=8)


def write_plots(folder: Path, table: Mapping[str, Mapping[str, dict[str, Any]]],
                forget_class: int | None = None) -> list[str]:
    """``gap_<scenario>.png`` (average gap with 95% intervals) and ``relearn_<scenario>.png`` into ``folder``.

    ``forget_class`` (the class of the ``class`` scenario) names it in the relearning plot's labels.
    """
    require("matplotlib", "The benchmark's plots").use("Agg")
    plt = require("matplotlib.pyplot", "The benchmark's plots")

    styles = _styles(sorted({m for rows in table.values() for m in rows}))
    written = []
    for scenario, rows in table.items():
        title = f"{scenario}: {SCENARIO_TITLES.get(scenario, scenario)}"
        methods = sorted((m for m, r in rows.items() if m != REFERENCE and r.get("average_gap", {}).get("mean") is not None),
                         key=lambda m: rows[m]["average_gap"]["mean"])
        if methods:
            fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(methods) + 2), 4.5))
            means = [100 * rows[m]["average_gap"]["mean"] for m in methods]
            errors = [100 * (rows[m]["average_gap"]["ci95"] or 0.0) for m in methods]
            bars = ax.bar([label(m) for m in methods], means, yerr=errors, capsize=3, color=[styles[m]["color"] for m in methods])
            for bar, method in zip(bars, methods):
                if method == ORIGINAL:
                    bar.set_hatch("//")
            ax.set_ylabel(f"average gap to {REFERENCE} (percentage points)")
            ax.set_ylim(bottom=0.0)  # a gap is never negative; an interval may reach below 0 with few seeds
            ax.set_title(f"{title}\nmean and 95% confidence interval over seeds", fontsize=10)
            ax.tick_params(axis="x", rotation=60)
            fig.tight_layout()
            fig.savefig(folder / f"gap_{scenario}.png", dpi=110)
            plt.close(fig)
            written.append(f"gap_{scenario}.png")
        if any(r.get("relearning") for r in rows.values()):
            fig, ax = plt.subplots(figsize=(9.0, 4.8))
            draw_relearning(ax, scenario, rows, styles, forget_class)
            fig.savefig(folder / f"relearn_{scenario}.png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            written.append(f"relearn_{scenario}.png")
    return written


# ------------------------------------------------------------------------------ output
def write_report(out: Path, config: Mapping[str, Any], records: Sequence[RunRecord], wall_time_s: float,
                 resumed: int = 0) -> list[str]:
    """Write ``report.md`` and the plots into ``out``; each file is renamed into place whole. Returns the file names."""
    table = aggregate(records)
    staging = Path(tempfile.mkdtemp(prefix=".report.", dir=out))
    try:
        plots = write_plots(staging, table, config.get("forget_class"))
        text = markdown(config, table, records, wall_time_s, resumed) + "".join(f"\n![{p}]({p})\n" for p in plots)
        (staging / "report.md").write_text(text)
        names = [*plots, "report.md"]
        umask = os.umask(0)
        os.umask(umask)
        for name in names:
            os.chmod(staging / name, 0o666 & ~umask)  # mkdtemp's private mode must not leak into the report
            os.replace(staging / name, out / name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def summary_table(table: Mapping[str, Mapping[str, dict[str, Any]]]) -> Any:
    """A rich Table: average gap (percentage points) and runtime (s) per method and scenario."""
    from rich.table import Table

    rich_table = Table(title=f"average gap to {REFERENCE} (pp) · runtime (s), mean ± 95% CI")
    rich_table.add_column("method", no_wrap=True)
    for scenario in table:
        rich_table.add_column(f"{scenario} gap")
        rich_table.add_column(f"{scenario} s")
    for method in _ordered({m: None for rows in table.values() for m in rows}):
        cells = [label(method)]
        for rows in table.values():
            row = rows.get(method, {})
            if "error" in row:
                cells += ["failed", "–"]
            else:
                cells += [_fmt(row.get("average_gap")), _fmt(row.get("runtime_s"), scale=1.0, digits=2)]
        rich_table.add_row(*cells)
    return rich_table
