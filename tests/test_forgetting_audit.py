"""Model bank and per-example audit on the bundled digits: caching, keys, bad input, and the sanity must-show."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_unlearn import ClassForget, RandomForget, UnlearningDataModule, audit
from lightning_unlearn.forgetting_audit import ORIGINAL_ROW, REFERENCE_ROW
from lightning_unlearn.model_bank import BankMismatchError, ModelBank

BANK = {"bank_size": 8, "max_epochs": 8, "retain_sample": 300}


def _digits(forget=None) -> UnlearningDataModule:
    return UnlearningDataModule("digits", forget=forget or ClassForget(3), batch_size=64)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cache = tmp_path_factory.mktemp("banks")
    out = tmp_path_factory.mktemp("audit")
    result = audit(_digits(), {"finetune": {"max_epochs": 2, "target": None, "guard": None}}, cache_dir=cache, output=out, **BANK)
    return result, cache, out


def test_sanity_original_far_retrain_half_vs_half_near_ideal(report):
    rows = report[0]["rows"]
    original, reference = rows[ORIGINAL_ROW], rows[REFERENCE_ROW]
    # Measured (digits, class 3 forgotten, LeNet-5, 8 epochs, K = 8; the reference is 4 retrained vs 4 others):
    # original U-LiRA AUC 0.998, TPR@1%FPR 0.992, NeurIPS F 0.000; reference AUC 0.522, TPR@1%FPR 0.012,
    # TPR@5%FPR 0.068, F 0.317. The margins below are several times the reference's distance from the ideal.
    assert original["ulira_forget"]["auc"] > 0.9 and original["ulira_forget"]["tpr@1%fpr"] > 0.5
    assert original["neurips"]["forgetting_quality"] < 0.05
    assert abs(reference["ulira_forget"]["auc"] - 0.5) < 0.15
    assert reference["ulira_forget"]["tpr@5%fpr"] < 0.2
    assert reference["neurips"]["forgetting_quality"] > 0.15
    # KLOM on D_f: the original's margins lie outside the retrained models' range, the reference's within it
    assert original["klom"]["forget"]["p50"] > reference["klom"]["forget"]["p50"]


def test_report_files_and_cached_rerun(report, tmp_path):
    result, cache, out = report
    stored = json.loads((out / "forgetting_audit.json").read_text())
    assert set(stored["rows"]) == {ORIGINAL_ROW, REFERENCE_ROW, "finetune"}
    assert "| finetune |" in (out / "forgetting_audit.md").read_text()
    files = sorted(p for p in cache.rglob("*.pt"))
    stamps = [p.stat().st_mtime_ns for p in files]
    again = audit(_digits(), {"finetune": {"max_epochs": 2, "target": None, "guard": None}}, cache_dir=cache, **BANK)
    assert [p.stat().st_mtime_ns for p in files] == stamps  # nothing retrained or rewritten
    assert again["rows"]["finetune"] == result["rows"]["finetune"]


def test_bank_outputs_are_compact_and_per_split(report):
    _, cache, _ = report
    bank = ModelBank(_digits(), k=8, max_epochs=8, retain_sample=300, cache_dir=cache)
    out = bank.outputs("retrained")
    assert out["forget"]["phi"].shape == (8, out["forget"]["indices"].numel())
    assert out["retain"]["phi"].shape[1] == 300
    assert out["test"]["probs"].dtype == torch.float16 and out["test"]["phi"].dtype == torch.float32


def test_bank_of_another_request_is_refused(report):
    _, cache, _ = report
    folder = next(p.parent for p in cache.rglob("bank.json"))
    with pytest.raises(BankMismatchError, match="another manifest") as err:
        ModelBank(_digits(RandomForget(count=30)), folder, k=8, max_epochs=8, retain_sample=300)
    assert "\n" not in str(err.value)
    with pytest.raises(BankMismatchError, match="another recipe"):
        ModelBank(_digits(), folder, k=8, max_epochs=3, retain_sample=300)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 1}, "`k` (models of each kind) must be an int >= 2, got 1"),
        ({"k": 4, "originals": 1}, "a method without randomness"),
    ],
)
def test_bank_bad_input(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=None) as err:
        ModelBank(_digits(), tmp_path / "bank", **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_audit_bad_input(tmp_path):
    for small in (2, 4):  # 4 models per kind leave halves of 2: too few for two folds of the per-example attack
        with pytest.raises(ValueError, match=f"`bank_size` must be an integer >= 8, got {small}"):
            audit(_digits(), "finetune", bank_size=small, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="`methods` must be"):
        audit(_digits(), [], cache_dir=tmp_path)


def test_the_cli_audit_subcommand(report, tmp_path, capsys):
    """``lightning-unlearn audit``: the report from the CLI, on the bank the Python audit above cached (only the
    unlearned models of the CLI's method are new), and its bad input as one-line errors."""
    from lightning_unlearn.cli import main

    _, cache, _ = report
    args = ["audit", "--data.dataset", "digits", "--data.forget", "ClassForget", "--data.forget.classes", "3",
            "--data.batch_size", "64", "--bank_size", "8", "--max_epochs", "8", "--retain_sample", "300",
            "--cache_dir", str(cache)]
    main([*args, "--methods", "[SU]", "--output", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "| su |" in printed.lower() and (tmp_path / "out" / "forgetting_audit.json").exists()
    for bad, message in ((["--methods", "[Foo]"], "`--methods`: Unknown unlearning method 'Foo'"),
                         (["--methods", "[SU]", "--bank_size", "4"], "`bank_size` must be an integer >= 8, got 4")):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *bad])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_methods_that_need_the_training_record_are_audited(report):
    """The bank records its originals' training (PrototypeRecorder): NaivePS runs from that record, a fresh copy each time."""
    _, cache, _ = report
    result = audit(_digits(), "NaivePS", cache_dir=cache, **BANK)
    assert sorted(p.name for p in cache.rglob("recording_*.pt")) == [f"recording_{i}.pt" for i in range(8)]
    row = result["rows"]["NaivePS"]
    assert 0.0 <= row["ulira_forget"]["auc"] <= 1.0 and row["klom"]["forget"]["p50"] >= 0.0
