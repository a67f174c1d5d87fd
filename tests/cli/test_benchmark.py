"""The benchmark (``make demo``), shortened: rows, intervals, resuming after a kill, workers, bad input."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lightning_unlearn
from lightning_unlearn import ClassForget, UnlearningDataModule
from lightning_unlearn.benchmark import ORIGINAL, REFERENCE, RunRecord, run_benchmark
from lightning_unlearn.benchmark_report import aggregate, markdown, summarize
from lightning_unlearn.benchmark_store import prepare_output
from lightning_unlearn.cli import main
from lightning_unlearn.data.datamodule import DEFAULT_REF_FRACTION
from lightning_unlearn.methods import available_methods

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter", "ignore:Found .* module\\(s\\) in eval mode",
                                        "ignore:.*instantiate_classes.*:DeprecationWarning")

QUICK = ["--dataset", "digits", "--original_epochs", "3", "--max_epochs", "1", "--relearn_epochs", "1", "--threads", "1"]
ROOT = str(Path(lightning_unlearn.__file__).resolve().parent.parent)
T_975_2 = 4.302652729749464  # Student t quantile t_{0.975, 2} (3 seeds), from a table


def _tiny(out: Path) -> list[str]:
    """Two seeds, one scenario, one method: 6 runs (Retrain, Original and GradientAscent per seed)."""
    return ["benchmark", "--output", str(out), *QUICK, "--scenarios", "[class]", "--seeds", "[0,1]",
            "--methods", "[GradientAscent]"]


def _numbers(out: Path) -> dict[tuple, dict]:
    """Every run's numbers from results.json, without timings (they differ between identical runs)."""
    runs = json.loads((out / "results.json").read_text())["runs"]
    timing = {"runtime_s", "wall_s", "check_time_s"}

    def untimed(key: str, value):
        if key == "metrics":
            return {m: v for m, v in value.items() if "time" not in m}
        if key == "outcome" and value is not None:
            return {k: v for k, v in value.items() if k not in timing}
        return value

    return {(r["scenario"], r["seed"], r["method"]): {k: untimed(k, v) for k, v in r.items() if k not in timing} for r in runs}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny benchmark, uninterrupted, in this process (one worker)."""
    out = tmp_path_factory.mktemp("bench") / "uninterrupted"
    main(_tiny(out))
    return out


def test_benchmark_report_has_a_row_per_registered_method(tmp_path, capsys):
    out = tmp_path / "report"
    main(["benchmark", "--output", str(out), *QUICK, "--scenarios", "[class]", "--seeds", "[0]"])
    assert sorted(p.name for p in out.iterdir()) == ["gap_class.png", "relearn_class.png", "report.md", "results.json", "runs"]
    assert not [p for p in [*tmp_path.iterdir(), *out.iterdir()] if p.name.startswith(".")]  # no temporary file left
    results = json.loads((out / "results.json").read_text())
    expected = sorted(m for m in available_methods() if m != REFERENCE)
    assert sorted(results["config"]["methods"]) == expected
    summary = results["summary"]["class"]
    assert set(summary) == {REFERENCE, ORIGINAL, *expected}
    failed = {m: row["error"] for m, row in summary.items() if "error" in row}
    assert not failed, f"methods failed with their default arguments: {failed}"
    for method, row in summary.items():
        assert row["runs"] == 1 and row["acc_forget"].keys() == {"mean", "ci95", "std", "n"}
        assert row["acc_forget"]["n"] == 1 and row["acc_forget"]["ci95"] is None  # one seed: no interval
        assert 0.0 <= row["acc_forget"]["mean"] <= 1.0 and row["steps"]["mean"] >= 0
        assert len(row["relearning"]["mean"]) == 2  # epoch 0 and one relearning epoch
        if method not in (REFERENCE, ORIGINAL):
            assert row["runtime_s"]["mean"] > 0 and row["gap/acc_test"]["mean"] >= 0.0
    assert summary[REFERENCE]["average_gap"]["mean"] == pytest.approx(0.0, abs=1e-9)  # the reference against itself
    original = summary[ORIGINAL]  # doing nothing keeps the forgotten class: far from Retrain on D_f
    assert original["runtime_s"]["mean"] == 0.0 and original["steps"]["mean"] == 0 and original["stopped"]["n"] == 0
    assert original["gap/acc_forget"]["mean"] > 0.3 and original["average_gap"]["mean"] > 0.05
    runs = {r["method"]: r for r in results["runs"]}
    assert runs["FineTune"]["seeds"] == {"data": 0, "forget": 0, "original": 0, "method": 0}
    assert runs["GradientAscent"]["stop_rule"] and isinstance(runs["GradientAscent"]["stopped"], bool)
    for method in expected:  # every method serves the request by default and the record keeps its outcome
        outcome = runs[method]["outcome"]
        assert outcome is not None and outcome["target"] is not None, method
        assert outcome["reached"] == runs[method]["stopped"] and runs[method]["stopped_by"] == outcome["stopped_by"]
        assert outcome["runtime_s"] == pytest.approx(runs[method]["runtime_s"]) and outcome["steps"] == runs[method]["steps"]
    assert len(list((out / "runs").glob("*.json"))) == len(expected) + 2
    rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    for method in [f"**{REFERENCE}**", "Original (no unlearning)", *expected]:
        assert any(line.startswith(f"| {method} ") for line in rows), method
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == len(expected) + 2 and lines[0].startswith(f"[1/{len(expected) + 2}] class seed 0 {REFERENCE}: avg gap")
    assert all(" steps, target " in line and line.endswith(" s") for line in lines), lines


def test_summaries_are_student_t_intervals_over_seeds():
    records = []
    for seed, (ref_test, forget, test) in enumerate([(0.90, 0.1, 0.85), (0.80, 0.2, 0.90), (0.85, 0.3, 0.80)]):
        records += [
            RunRecord("class", seed, REFERENCE, {"acc_forget": 0.0, "acc_test": ref_test}, 10.0, [0.0, 0.0], steps=100),
            RunRecord("class", seed, ORIGINAL, {"acc_forget": 0.9, "acc_test": 0.9}, 0.0, [0.9, 0.9], steps=0),
            RunRecord("class", seed, "A", {"acc_forget": forget, "acc_test": test}, seed + 1.0, [0.5, 0.2], steps=10 * (seed + 1),
                      stop_rule=True, stopped=seed > 0, stopped_step=10 * (seed + 1) if seed else None),
        ]
    records.append(RunRecord("class", 0, "B", error="NonFiniteLossError: boom"))
    table = aggregate(records)["class"]
    ci = T_975_2 * 0.1 / math.sqrt(3)  # s = 0.1 for (0.1, 0.2, 0.3)
    assert table["A"]["acc_forget"] == pytest.approx({"mean": 0.2, "ci95": ci, "std": 0.1, "n": 3})
    # gaps are taken against the reference of the same seed: |0.85-0.90|, |0.90-0.80|, |0.80-0.85|
    gap_std = 0.05 / math.sqrt(3)
    assert table["A"]["gap/acc_test"] == pytest.approx({"mean": 0.2 / 3, "ci95": T_975_2 * gap_std / math.sqrt(3), "std": gap_std, "n": 3})
    assert table["A"]["runtime_s"] == pytest.approx({"mean": 2.0, "ci95": T_975_2 / math.sqrt(3), "std": 1.0, "n": 3})
    assert table["A"]["steps"]["mean"] == 20 and table["A"]["stopped"] == {"fired": 2, "n": 3}
    assert table["A"]["relearning"]["mean"] == pytest.approx([0.5, 0.2]) and table["A"]["relearning"]["ci95"] == [0.0, 0.0]
    assert table[ORIGINAL]["gap/acc_forget"]["mean"] == pytest.approx(0.9) and table[ORIGINAL]["stopped"]["n"] == 0
    assert table["B"]["error"] == "NonFiniteLossError: boom" and table["B"]["failed"] == 1
    assert summarize([0.5]) == {"mean": 0.5, "ci95": None, "std": None, "n": 1}
    assert summarize([float("nan"), None]) == {"mean": None, "ci95": None, "std": None, "n": 0}
    config = {"seeds": [0, 1, 2], "model": "m", "dataset": "d", "original_epochs": 1, "max_epochs": None,
              "precision": "32-true", "relearn_epochs": 1}
    text = markdown(config, aggregate(records), records, 1.0)
    assert text.count("percentage points") == 1  # the units are stated once
    assert f"| A | 20.0 ± {100 * ci:.1f} (20.0 ± {100 * ci:.1f}) | 85.0 ± " in text
    assert "| 2.00 ± 2.48 | 20 ± 25 | 2/3 | 0/3 | 20.0 ± 0.0 |" in text  # runtime (s), steps, target k/n, guard k/n, relearn
    assert "| Original (no unlearning) | 90.0 ± 0.0 (90.0 ± 0.0) |" in text and "| 0.00 ± 0.00 | 0 ± 0 | – |" in text
    assert "| B | failed (see below) |" in text and "- B on class (seed 0): NonFiniteLossError: boom" in text


def _stored_runs(out: Path) -> int:
    try:
        return len(json.loads((out / "results.json").read_text())["runs"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_killed_benchmark_resumes_to_the_numbers_of_an_uninterrupted_run(tmp_path, tiny_run):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "lightning_unlearn.cli", *_tiny(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while _stored_runs(out) < 1 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # right after the first run landed: the others are lost
    finally:
        log = process.communicate(timeout=60)[0]
    assert process.returncode == -signal.SIGKILL, log
    finished = _stored_runs(out)
    assert 1 <= finished < 6, log
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{finished} runs already in {out}, {6 - finished} to run" in resumed.stdout
    assert _numbers(out) == _numbers(tiny_run) and len(_numbers(out)) == 6
    assert "runs resumed from an earlier invocation" in (out / "report.md").read_text()


def test_workers_do_not_change_the_numbers(tmp_path, tiny_run):
    out = tmp_path / "workers"
    main([*_tiny(out), "--workers", "2"])
    assert _numbers(out) == _numbers(tiny_run)
    assert list(_numbers(out)) == list(_numbers(tiny_run))  # results.json lists the runs in the same order


def test_an_existing_output_resumes_or_needs_overwrite(tmp_path, tiny_run, capsys):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run, out)
    (out / "notes.txt").write_text("the user's own file")
    main(_tiny(out))  # the same configuration: every run is already there, nothing is trained
    assert "6 runs already in" in capsys.readouterr().out and _numbers(out) == _numbers(tiny_run)
    with pytest.raises(SystemExit) as exit_info:
        main([*_tiny(out), "--max_epochs", "2"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "`output`" in err and "differs in: max_epochs" in err and "--overwrite true" in err
    config = json.loads((out / "results.json").read_text())["config"]
    assert prepare_output(out, {**config, "max_epochs": 2}, overwrite=True) == {}  # starts afresh...
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "results.json", "runs"]  # ...keeping the user's file
    assert [p.name for p in (out / "runs").iterdir()] == [".lock"]


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (["--seeds", "[]"], {"seeds": ()}, "`seeds` must contain at least one seed, got an empty list."),
        (["--seeds", "[0,1,0]"], {"seeds": (0, 1, 0)}, "`seeds` must not repeat a seed (each is one replicate), got [0, 1, 0]."),
        (["--scenarios", "[class,everything]"], {"scenarios": ("class", "everything")},
         "`scenarios` must contain only ['class', 'subclass', 'random'], got 'everything'."),
        (["--methods", "[FineTune,NoSuchMethod]"], {"methods": ("FineTune", "NoSuchMethod")},
         "`methods`: Unknown unlearning method 'NoSuchMethod'. Registered methods: BoundaryExpanding"),
        (["--workers", "0"], {"workers": 0}, "`workers` must be an integer >= 1, got 0."),
        (["--per_example_bank", "4"], {"per_example_bank": 4}, "`per_example_bank` must be 0 (off) or an integer >= 8, got 4"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(tmp_path, capsys, args, options, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--output", str(out), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lightning-unlearn benchmark: error: {message}")
    assert not out.exists()  # checked before any work
    with pytest.raises(ValueError, match=re.escape(message)):  # a BenchmarkArgumentError, from Python too
        run_benchmark(output=str(out), **options)
    assert not out.exists()


def test_per_example_columns_when_asked(tmp_path, capsys):
    """``--per_example_bank 8``: every row gets U-LiRA AUC, TPR@1%FPR, the NeurIPS score and KLOM p50 on D_f, from a
    model bank kept in the output folder (the same scores as ``lightning-unlearn audit`` on that bank)."""
    from lightning_unlearn.forgetting_audit import ORIGINAL_ROW, REFERENCE_ROW, bank_row, summary_columns
    from lightning_unlearn.model_bank import ModelBank

    out = tmp_path / "bench"
    main(["benchmark", "--output", str(out), "--dataset", "digits", "--original_epochs", "3", "--max_epochs", "1",
          "--relearn_epochs", "0", "--threads", "1", "--scenarios", "[class]", "--seeds", "[0]", "--methods", "[FineTune]",
          "--per_example_bank", "8"])
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["per_example_bank"] == 8
    columns = ("ulira_auc", "ulira_tpr@1%fpr", "neurips_score", "klom_p50_forget")
    summary = results["summary"]["class"]
    for method in (REFERENCE, ORIGINAL, "FineTune"):
        assert all(summary[method][f"per_example/{c}"]["n"] == 1 for c in columns), method
    value = {m: {c: summary[m][f"per_example/{c}"]["mean"] for c in columns} for m in summary}
    # the original is told apart from retraining on the forgotten class; Retrain half vs half is not
    assert value[ORIGINAL]["ulira_auc"] > 0.9 > 0.7 > value[REFERENCE]["ulira_auc"]
    assert value[ORIGINAL]["neurips_score"] < 0.05 < value[REFERENCE]["neurips_score"]
    # the numbers are the audit's on the stored bank (nothing retrained: the bank is read from the folder)
    dm = UnlearningDataModule("digits", forget=ClassForget(3), seed=0, forget_seed=0, split_seed=0, new_fraction=0.1,
                              ref_fraction=DEFAULT_REF_FRACTION, batch_size=64)
    dm.setup()
    bank = ModelBank(dm, out / "banks" / "class-seed0", k=8, model="lenet5", max_epochs=3, lr=1e-3, seed=0,
                     trainer_kwargs={"accelerator": "auto", "devices": 1})
    stamps = sorted(p.stat().st_mtime_ns for p in (out / "banks").rglob("*.pt"))
    assert summary_columns(bank_row(bank, ORIGINAL_ROW)) == pytest.approx(value[ORIGINAL], abs=1e-12)
    assert summary_columns(bank_row(bank, REFERENCE_ROW)) == pytest.approx(value[REFERENCE], abs=1e-12)
    assert sorted(p.stat().st_mtime_ns for p in (out / "banks").rglob("*.pt")) == stamps
    header = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| method"))
    assert header.endswith("| U-LiRA AUC D_f | TPR@1%FPR | NeurIPS score | KLOM p50 D_f |")
    assert "**Per-example scores** (a bank of K = 8" in (out / "report.md").read_text()


@pytest.mark.parametrize("scenario", ["class", "subclass", "random"])
def test_relearning_plot_tells_the_methods_apart_and_names_the_scenarios_data(scenario):
    """Every method its own (colour, marker, line style) from tab10; legend outside, by final value; labels true."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lightning_unlearn.benchmark_report import _styles, draw_relearning

    methods = [m for m in available_methods() if m != REFERENCE]
    assert len(methods) >= 16
    rows = {m: {"relearning": {"mean": [0.0, 0.01 * i]}} for i, m in enumerate(methods)}
    rows[REFERENCE] = {"relearning": {"mean": [0.0, 0.5]}}
    rows[ORIGINAL] = {"relearning": {"mean": [1.0, 1.0]}}
    styles = _styles(list(rows))
    tab10 = set(plt.get_cmap("tab10").colors)
    assert all(styles[m]["color"] in tab10 for m in methods)  # strong hues only, no pastel
    combos = {(styles[m]["color"], styles[m]["marker"], styles[m]["linestyle"]) for m in methods}
    assert len(combos) == len(methods) and len({styles[m]["marker"] for m in methods}) >= 12
    fig, ax = plt.subplots()
    draw_relearning(ax, scenario, rows, styles, forget_class=3)
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:2] == [REFERENCE, "Original (no unlearning)"]
    # Then the methods in the order of the curves' ends, highest first.
    assert labels[2:] == sorted(methods, key=lambda m: -rows[m]["relearning"]["mean"][-1])
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1  # outside the axes: no curve hidden
    if scenario == "class":
        assert "D_new without class 3" in ax.get_xlabel() and "D_tf" in ax.get_ylabel()
    else:
        assert "D_new, all classes" in ax.get_xlabel() and "D_f" in ax.get_ylabel()
    assert "retained" not in ax.get_xlabel() + ax.get_ylabel()
    plt.close(fig)
