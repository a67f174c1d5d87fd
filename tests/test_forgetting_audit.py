"""Model bank and per-example audit on the bundled digits: caching, keys, bad input, and the sanity must-show."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from lightning_unlearn import ClassForget, RandomForget, UnlearningDataModule, audit
from lightning_unlearn.forgetting_audit import ORIGINAL_ROW, REFERENCE_ROW
from lightning_unlearn.metrics.functional import klom, neurips_forgetting_score, ulira
from lightning_unlearn.model_bank import BankMismatchError, ModelBank

ONE_THREAD = True  # 24+ small trainings and a CLI run: one intra-op thread (see conftest)
BANK = {"bank_size": 8, "max_epochs": 8, "retain_sample": 300}
# A method that forgets part of the way: FineTune (fine-tuning on D_r only) with a budget that moves the forgotten
# class's φ well towards, but not onto, the retrained models' (measured below).
METHODS = {"finetune": {"max_epochs": 15, "lr": 0.05, "target": None, "guard": None}}


def _digits(forget=None) -> UnlearningDataModule:
    return UnlearningDataModule("digits", forget=forget or ClassForget(3), batch_size=64)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cache = tmp_path_factory.mktemp("banks")
    out = tmp_path_factory.mktemp("audit")
    result = audit(_digits(), METHODS, cache_dir=cache, output=out, **BANK)
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


def _half_vs_half(unlearned: torch.Tensor, retrained: torch.Tensor) -> dict[str, float]:
    """Mean over the 35 ways to split the K = 8 model indices in two halves a, b of: the scores of ``unlearned[a]``
    against ``retrained[b]`` (4 vs 4 models: the retrain reference's own footing, so the three rows are comparable)."""
    scores = []
    for a in (list(c) for c in itertools.combinations(range(8), 4) if 0 in c):
        b = [i for i in range(8) if i not in a]
        u, r = unlearned[a], retrained[b]
        scores.append([ulira(u, r)["auc"], neurips_forgetting_score(u, r)["forgetting_quality"], klom(u, r)["p50"]])
    mean = torch.tensor(scores, dtype=torch.float64).mean(0).tolist()
    return dict(zip(("auc", "F", "klom"), mean))


def test_a_method_that_forgets_part_of_the_way_lands_between_original_and_retrain(report):
    """The original far from ideal, Retrain against a disjoint half of the retrain bank ideal, and a real method
    that partially forgets (FineTune with a budget) strictly between them on the U-LiRA AUC, the NeurIPS F and KLOM.

    Each row is scored 4 vs 4 models, averaged over the 35 half/half splits of the bank (0.2 s)."""
    _, cache, _ = report
    bank = ModelBank(_digits(), k=8, max_epochs=8, retain_sample=300, cache_dir=cache)
    retrained = bank.outputs("retrained")["forget"]["phi"].double()
    original = _half_vs_half(bank.outputs("original")["forget"]["phi"].double(), retrained)
    method = _half_vs_half(bank.outputs("unlearned", "finetune", **METHODS["finetune"])["forget"]["phi"].double(), retrained)
    reference = _half_vs_half(retrained, retrained)
    # Measured (digits, class 3, LeNet-5, 8 epochs, K = 8), these means for banks of seeds 0 (this one) / 8 / 16:
    #   original  AUC 0.950 / 0.957 / 0.952   F 0.000 / 0.000 / 0.000   KLOM p50 10.86 / 10.88 / 10.75
    #   FineTune  AUC 0.650 / 0.694 / –       F 0.160 / 0.141 / –       KLOM p50 10.05 / 10.13 / –
    #   retrain   AUC 0.504 / 0.502 / 0.512   F 0.263 / 0.255 / 0.258   KLOM p50  7.74 /  8.48 / 9.19
    # (one 4-vs-4 split alone spreads more: AUC sd 0.02 / 0.08 / 0.07-0.16, F sd 0 / 0.05 / 0.05, KLOM sd 0.1 / 0.5 / 0.4-1.1).
    # Each margin is twice the larger seed-to-seed sd of the two means it separates: AUC sd <= 0.031 (FineTune's two
    # seeds differ by 0.044), F sd <= 0.013, KLOM sd 0.07 (original, FineTune) and 0.73 (retrain).
    assert original["auc"] - method["auc"] > 0.06 and method["auc"] - reference["auc"] > 0.06, (original, method, reference)
    assert method["F"] - original["F"] > 0.03 and reference["F"] - method["F"] > 0.03, (original, method, reference)
    assert original["klom"] - method["klom"] > 0.15 and method["klom"] - reference["klom"] > 1.46, (original, method, reference)
    # and the method did forget on the population level, as the retrained models do (forget accuracy 0 for both)
    assert float(bank.outputs("unlearned", "finetune", **METHODS["finetune"])["forget"]["accuracy"].max()) < 0.05


def test_report_files_and_cached_rerun(report, tmp_path):
    result, cache, out = report
    stored = json.loads((out / "forgetting_audit.json").read_text())
    assert set(stored["rows"]) == {ORIGINAL_ROW, REFERENCE_ROW, "finetune"}
    text = (out / "forgetting_audit.md").read_text()
    assert "| finetune |" in text
    # the plots: valid PNGs next to the JSON and the Markdown, linked from it; nothing half-written left behind
    plots = stored["plots"]
    assert plots["epsilon"] == "forgetting_audit_epsilon.png" and set(plots["worst"]) == {ORIGINAL_ROW, "finetune"}
    import matplotlib.image

    for name in [plots["epsilon"], *plots["worst"].values()]:
        assert f"]({name})" in text
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0.01  # drawn
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["forgetting_audit.json", "forgetting_audit.md", plots["epsilon"], *plots["worst"].values()])
    # the worst examples: forgotten examples of the request, ranked by ε (the original's are separated: ε at the top)
    bank = ModelBank(_digits(), k=8, max_epochs=8, retain_sample=300, cache_dir=cache)
    forget = set(bank.outputs("retrained")["forget"]["indices"].tolist())
    for name in (ORIGINAL_ROW, "finetune"):
        worst = stored["rows"][name]["worst_forget"]
        assert len(worst) == 6 and [w["epsilon"] for w in worst] == sorted((w["epsilon"] for w in worst), reverse=True)
        assert {w["index"] for w in worst} <= forget
        assert f"- {name}: {worst[0]['index']}: {worst[0]['epsilon']:.2f}" in text
    files = sorted(p for p in cache.rglob("*.pt"))
    stamps = [p.stat().st_mtime_ns for p in files]
    again = audit(_digits(), METHODS, cache_dir=cache, **BANK)
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


def test_audit_without_matplotlib_fails_before_any_training(tmp_path, monkeypatch):
    """A report folder holds plots: without matplotlib, one line naming the extra, before any model is trained."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if it were not installed
    with pytest.raises(ValueError, match=r"The audit's plots needs matplotlib: pip install 'lightning-unlearn\[bench\]'") as err:
        audit(_digits(), "finetune", cache_dir=tmp_path / "banks", output=tmp_path / "out", **BANK)
    assert "\n" not in str(err.value) and "leave `output` unset" in str(err.value)
    assert not (tmp_path / "banks").exists() and not (tmp_path / "out").exists()


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
