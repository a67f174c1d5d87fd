"""The benchmark (``make demo``), shortened: every registered method, two seeds, the report folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_unlearn.benchmark import REFERENCE, BenchmarkResult, RunRecord, _markdown, aggregate, run_benchmark
from lightning_unlearn.cli import main
from lightning_unlearn.methods import available_methods

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter", "ignore:Found .* module\\(s\\) in eval mode")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, spinning OpenMP threads cost more than they give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_benchmark_report_has_a_row_per_registered_method(tmp_path):
    out = tmp_path / "report"
    main(["benchmark", "--output", str(out), "--dataset", "digits", "--scenarios", "[class]", "--seeds", "[0]",
          "--original_epochs", "3", "--max_epochs", "1", "--relearn_epochs", "1"])
    assert sorted(p.name for p in out.iterdir()) == ["gap_class.png", "relearn_class.png", "report.md", "results.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    results = json.loads((out / "results.json").read_text())
    expected = sorted(m for m in available_methods() if m != REFERENCE)
    assert sorted(results["config"]["methods"]) == expected
    summary = results["summary"]["class"]
    assert set(summary) == {REFERENCE, *expected}
    failed = {m: row["error"] for m, row in summary.items() if "error" in row}
    assert not failed, f"methods failed with their default arguments: {failed}"
    for method, row in summary.items():
        assert row["runs"] == 1 and len(row["acc_forget"]) == 2  # (mean, std)
        assert 0.0 <= row["acc_forget"][0] <= 1.0 and row["runtime_s"][0] > 0
        assert len(row["relearning"]) == 2  # epoch 0 and one relearning epoch
        if method != REFERENCE:
            assert row["gap/acc_test"][0] >= 0.0
    assert summary[REFERENCE]["average_gap"][0] == pytest.approx(0.0, abs=1e-9)  # the reference against itself
    table = (out / "report.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    for method in [REFERENCE, *expected]:
        assert any(line.startswith(f"| {method} ") or line.startswith(f"| **{method}**") for line in rows), method


def test_aggregate_mean_std_over_seeds_and_gaps_per_seed():
    records = [
        RunRecord("class", 0, REFERENCE, {"acc_forget": 0.0, "acc_test": 0.90}, 10.0, [0.0, 0.0]),
        RunRecord("class", 1, REFERENCE, {"acc_forget": 0.0, "acc_test": 0.80}, 12.0, [0.0, 0.1]),
        RunRecord("class", 0, "A", {"acc_forget": 0.2, "acc_test": 0.85}, 1.0, [0.2, 0.4]),
        RunRecord("class", 1, "A", {"acc_forget": 0.4, "acc_test": 0.90}, 3.0, [0.4, 0.6]),
        RunRecord("class", 0, "B", error="NonFiniteLossError: boom"),
    ]
    table = aggregate(records)["class"]
    mean, std = table["A"]["acc_forget"]
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1414213, rel=1e-5)
    # the gap is taken against the reference of the same seed, then averaged: |0.85-0.90|, |0.90-0.80|
    assert table["A"]["gap/acc_test"][0] == pytest.approx(0.075)
    assert table["A"]["runtime_s"][0] == pytest.approx(2.0)
    assert table["A"]["relearning"] == pytest.approx([0.3, 0.5])
    assert table["B"]["error"] == "NonFiniteLossError: boom" and table["B"]["failed"] == 1
    result = BenchmarkResult(Path("unused"), records, 1.0, {"seeds": [0, 1], "model": "m", "dataset": "d", "original_epochs": 1,
                                                          "max_epochs": None, "precision": "32-true", "relearn_epochs": 1})
    markdown = _markdown(result, aggregate(records))
    assert "| A | 30.0 ± 14.1 (30.0 ± 14.1) |" in markdown  # value (gap) in %, mean ± std over the 2 seeds
    assert "| B | failed (see below) |" in markdown and "- B on class (seed 0): NonFiniteLossError: boom" in markdown


def test_benchmark_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="Registered methods: "):
        run_benchmark(output=str(tmp_path / "x"), methods=("NoSuchMethod",))
    with pytest.raises(ValueError, match="`scenarios` must contain only"):
        run_benchmark(output=str(tmp_path / "x"), scenarios=("everything",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`devices` must be 1 for the benchmark"):
        run_benchmark(output=str(tmp_path / "x"), devices=2)
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        run_benchmark(output=str(tmp_path / "exists"), overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]


def test_benchmark_attaches_the_scenario_stopping_rule(original_lenet, mnist_dm):
    from lightning_unlearn.benchmark import check_interval, stopping_rules
    from lightning_unlearn.callbacks import ForgetAccuracyStop, ReferenceAccuracyStop
    from lightning_unlearn.methods import GradientAscent, UGradSL, UGradSLPlus

    assert isinstance(stopping_rules("class")[0], ForgetAccuracyStop)
    assert all(isinstance(stopping_rules(s)[0], ReferenceAccuracyStop) for s in ("subclass", "random"))
    assert stopping_rules("random")[0].reference == "current" and stopping_rules("random", "initial")[0].reference == "initial"
    with pytest.raises(ValueError, match="`instance_reference` must be 'current' or 'initial', got 'first'"):
        run_benchmark(instance_reference="first")  # type: ignore[arg-type]
    dm = mnist_dm("random")  # 340 forget samples at batch 64: 6 steps a pass; 3,060 retain samples: 48 steps
    assert check_interval(GradientAscent(original_lenet), dm) == {"val_check_interval": 1, "check_val_every_n_epoch": None}
    assert check_interval(UGradSLPlus(original_lenet), dm)["val_check_interval"] == 48 // 8  # an epoch is a pass over D_r
    assert check_interval(UGradSL(original_lenet), dm)["val_check_interval"] == 1  # an epoch is a pass over D_f
    # Gradient ascent on a random 10% runs away without the rule; with it, it stops mid-run.
    method = GradientAscent(original_lenet, max_epochs=6)
    rule = stopping_rules("random")
    from lightning_unlearn import split_accuracies, unlearn

    unlearn(original_lenet, dm, method=method, callbacks=rule, trainer_kwargs=check_interval(method, dm))
    assert rule[0].stopped_epoch is not None and method.current_epoch < 5
    assert split_accuracies(method.unlearned_model, dm)["test"] > 0.5
