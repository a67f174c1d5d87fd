"""evaluate(): values against independent computations, one forward pass per split, the report files, bad input."""

from __future__ import annotations

import json
import time

import pytest
import torch

from lightning_unlearn import ClassForget, LeNet5, UnlearningDataModule, split_accuracies, unlearn
from lightning_unlearn.evaluation import UnlearningReport, evaluate
from lightning_unlearn.relearning import relearn


@pytest.fixture(scope="module")
def ga_class(mnist_dm, original_lenet):
    # One fixed epoch, no request: a model that moved (the guard could hand back the original weights).
    return unlearn(original_lenet, mnist_dm("class"), method="GradientAscent", max_epochs=1, target=None, guard=None).eval()


def test_evaluate_matches_independent_values_and_writes_report(mnist_dm, original_lenet, retrained_lenet, ga_class, tmp_path):
    dm = mnist_dm("class")
    reference = retrained_lenet("class")
    curve = relearn(ga_class, dm, epochs=2, threshold=0.5)
    start = time.perf_counter()
    report = evaluate(ga_class, dm, original=original_lenet, reference=reference, relearning=curve, runtime_s=1.5)
    print(f"evaluate on MNIST-5k (3 models, MIA + loss MIA): {time.perf_counter() - start:.2f} s")
    assert isinstance(report, UnlearningReport)
    assert report.splits == ["forget", "retain", "test", "test_forget", "test_retain"]
    # Accuracies against the foundation's independent per-split passes.
    for role, model in (("unlearned", ga_class), ("original", original_lenet), ("reference", reference)):
        expected = split_accuracies(model, dm)
        assert report.models[role].accuracy == pytest.approx(expected, abs=1e-12)
        assert report.models[role].unlearning_accuracy == pytest.approx(1 - expected["forget"])
    # The average gap is the SPEC definition, recomputed by hand from the reported values.
    u, r = report.models["unlearned"], report.models["reference"]
    by_hand = [abs(u.accuracy[s] - r.accuracy[s]) for s in ("forget", "retain", "test")] + [abs(u.mia_efficacy - r.mia_efficacy)]
    assert report.average_gap == pytest.approx(sum(by_hand) / 4)
    assert report.average_gap > 0.0
    assert set(report.entropy_distance) == {"unlearned", "original"} and report.prediction_kl_split == "test_forget"
    assert len(report.prototype_similarity["unlearned"]) == 10
    assert report.parameter_change["l1"] > report.parameter_change["l1_head"] > 0
    # The retrained model never saw class 3: the original is further from it on D_f than on D_r.
    assert report.entropy_distance["original"]["forget"] > 5 * report.entropy_distance["original"]["retain"]

    folder = report.save(tmp_path / "report")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["accuracy.png", "class_accuracy.png", "prototype_similarity.png", "relearning.png", "report.json", "report.md"]
    payload = json.loads((folder / "report.json").read_text())
    assert payload["average_gap"] == pytest.approx(report.average_gap)
    assert payload["acc_forget"] == pytest.approx(u.accuracy["forget"])
    assert payload["relearning"]["unlearned"]["forget_accuracy"] == pytest.approx(curve.forget_accuracy)
    markdown = (folder / "report.md").read_text()
    assert "| Acc D_f (%) |" in markdown and "Average gap" in markdown and "![accuracy](accuracy.png)" in markdown
    assert all((folder / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names if n.endswith(".png"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_evaluate_without_reference_omits_gaps_and_runs_one_pass_per_split(mnist_dm, ga_class):
    dm = mnist_dm("class")
    batches = []
    handle = ga_class.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    try:
        report = evaluate(ga_class, dm)
    finally:
        handle.remove()
    # the input check (two zero inputs, before any pass), then forget + retain + test, each once; D_tf and D_tr are
    # sliced from the test outputs.
    assert batches[0] == 2
    assert sum(batches[1:]) == sum(len(dm.indices[s]) for s in ("forget", "retain")) + len(dm.split_dataset("test"))
    assert report.average_gap is None and report.gaps is None
    assert report.entropy_distance == {} and report.prototype_similarity == {} and report.prediction_kl == {}
    assert report.to_dict().get("average_gap") is None and "No reference" in report.notes[0]


def test_evaluate_rejects_bad_input(mnist_dm, original_lenet, ga_class):
    dm = mnist_dm("class")
    with pytest.raises(ValueError, match="`reference` predicts 9 classes but the data module has 10"):
        evaluate(ga_class, dm, reference=LeNet5(num_classes=9))
    no_ref = UnlearningDataModule("mnist5k", forget=ClassForget(3), seed=0)
    with pytest.raises(ValueError, match="`splits` names 'ref', but that split of the data module is empty"):
        evaluate(ga_class, no_ref, splits=("forget", "retain", "test", "ref"))
    with pytest.raises(ValueError, match="All models must be on the same device, got `unlearned` on cpu, `reference` on meta"):
        evaluate(ga_class, dm, reference=LeNet5().to("meta"))
    with pytest.raises(TypeError, match="`original` must be an nn.Module"):
        evaluate(ga_class, dm, original=torch.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`splits` must include 'retain'"):
        evaluate(ga_class, dm, splits=("forget", "test"))


def test_tiny_forget_set_omits_loss_mia_with_a_note(ga_class):
    from lightning_unlearn import IndexForget

    dm = UnlearningDataModule("mnist5k", forget=IndexForget([0, 1, 2, 3, 4]), seed=0)
    report = evaluate(ga_class, dm)
    assert report.unlearned.loss_mia is None and report.loss_mia_split is None
    assert "Loss MIA omitted" in report.notes[0] and "got 5" in report.notes[0]
    assert report.unlearned.mia_efficacy is not None and report.splits == ["forget", "retain", "test"]


@pytest.mark.parametrize("forget_classes, probe", [(None, "forget"), ([3], "test_forget")])
def test_relearning_plot_labels_are_true_for_the_request(forget_classes, probe):
    """A random or sub-class request has no retained-class restriction: the plot says all of D_new and D_f."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lightning_unlearn.evaluation import ModelMetrics
    from lightning_unlearn.plots import draw_relearning

    metrics = ModelMetrics({"forget": 0.9, "retain": 0.9, "test": 0.9}, 0.1, [0.9] * 10)
    roles = ("unlearned", "original", "reference")
    report = UnlearningReport(["forget", "retain", "test"], 10, forget_classes, None, dict.fromkeys(roles, metrics))
    curve = {"probe_split": probe, "forget_accuracy": [0.5, 0.9], "threshold": 0.8, "relearn_epochs": 1}
    report.relearning = {role: dict(curve) for role in roles}
    fig, ax = plt.subplots()
    draw_relearning(ax, report)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["unlearned", "original (before unlearning)", "reference (retrained)", "recovery threshold (80%)"]
    lines = ax.get_lines()[:3]
    assert len({line.get_color() for line in lines}) == 3 and len({line.get_marker() for line in lines}) == 3
    text = ax.get_xlabel() + ax.get_ylabel()
    assert "retained" not in text
    if forget_classes is None:
        assert "D_new, all classes" in ax.get_xlabel() and "D_f" in ax.get_ylabel()
    else:
        assert "D_new without class 3" in ax.get_xlabel() and "D_tf" in ax.get_ylabel()
    plt.close(fig)
