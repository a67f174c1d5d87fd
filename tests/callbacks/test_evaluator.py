"""UnlearningEvaluator: per-epoch scores logged to the loggers, best epoch kept and restored, resumable state."""

from __future__ import annotations

import csv

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_unlearn import create_method, make_trainer
from lightning_unlearn.callbacks import UnlearningEvaluator
from lightning_unlearn.evaluation import evaluate

EPOCHS = 3


def assert_one_row_per_quantity_and_step(rows: list[dict[str, str]]) -> None:
    """Every logged quantity has at most one value per logger step."""
    seen: set[tuple[str, str]] = set()
    for row in rows:
        for key, value in row.items():
            if key not in ("step", "epoch") and value:
                assert (key, row["step"]) not in seen, f"{key} logged twice at step {row['step']}"
                seen.add((key, row["step"]))


def test_evaluator_logs_every_epoch_and_restores_the_best(mnist_dm, original_lenet, retrained_lenet, tmp_path):
    dm = mnist_dm("class")
    evaluator = UnlearningEvaluator(reference=retrained_lenet("class"), mia=True, criterion="average_gap", restore_best=True)
    # A fixed epoch budget (no request's target or guard): the evaluator's own per-epoch mechanics.
    method = create_method("GradientAscent", original_lenet, max_epochs=EPOCHS, lr=2e-3, target=None, guard=None)
    logger = CSVLogger(tmp_path, name="run")
    trainer = make_trainer(EPOCHS, [evaluator], limit_val_batches=1.0, logger=logger)
    trainer.fit(method, datamodule=dm)

    assert [h["epoch"] for h in evaluator.history] == [0.0, 1.0, 2.0]
    gaps = [h["average_gap"] for h in evaluator.history]
    assert evaluator.best_epoch == min(range(EPOCHS), key=gaps.__getitem__) and evaluator.best_score == min(gaps)
    # The weights left in the model are the best epoch's, and score what was recorded for it.
    report = evaluate(method.unlearned_model, dm, reference=retrained_lenet("class"), loss_mia=False)
    assert report.average_gap == pytest.approx(evaluator.best_score, abs=1e-9)
    # Logged to the Trainer's logger and to callback_metrics, in the validation rows, each quantity once.
    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    logged = [float(r["val/average_gap"]) for r in rows if r.get("val/average_gap")]
    assert logged == pytest.approx(gaps)
    assert float(trainer.callback_metrics["val/retain_acc"]) == pytest.approx(evaluator.history[-1]["retain_acc"])
    assert not [k for k in rows[0] if k.startswith("eval/")]  # no second name for what val/ already holds
    assert_one_row_per_quantity_and_step(rows)
    for split in ("forget", "retain", "test", "test_forget", "test_retain"):  # the method's and the evaluator's splits
        values = [float(r[f"val/{split}_acc"]) for r in rows if r.get(f"val/{split}_acc")]
        assert values == pytest.approx([h[f"{split}_acc"] for h in evaluator.history])
    gap_steps = [r["step"] for r in rows if r.get("val/average_gap")]
    assert gap_steps == [r["step"] for r in rows if r.get("val/forget_acc")]  # the method's validation row, same step
    # Resumable: the state (history, best epoch and weights) round-trips.
    restored = UnlearningEvaluator(reference=retrained_lenet("class"), mia=True, criterion="average_gap")
    restored.load_state_dict(evaluator.state_dict())
    assert restored.history == evaluator.history and restored.best_epoch == evaluator.best_epoch
    assert all(torch.equal(restored.best_state[k], v) for k, v in evaluator.best_state.items())


def test_forget_target_criterion_keeps_the_first_epoch_reaching_it(mnist_dm, original_lenet):
    evaluator = UnlearningEvaluator(criterion="forget_target", forget_target=0.5)
    method = create_method("GradientAscent", original_lenet, max_epochs=2, lr=2e-3, target=None, guard=None)
    make_trainer(2, [evaluator], limit_val_batches=1.0).fit(method, datamodule=mnist_dm("class"))
    reached = [h["epoch"] for h in evaluator.history if h["forget_acc"] <= 0.5]
    assert reached and evaluator.best_epoch == reached[0] and "mia_efficacy" not in evaluator.history[0]


def test_evaluator_rejects_bad_configuration(mnist_dm, original_lenet):
    with pytest.raises(ValueError, match="`criterion` must be None, 'average_gap' or 'forget_target', got 'gap'"):
        UnlearningEvaluator(criterion="gap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`criterion`='average_gap' needs a `reference` model and `mia`=True"):
        UnlearningEvaluator(criterion="average_gap", mia=True)
    with pytest.raises(ValueError, match=r"`forget_target` must be in \[0, 1\], got -0.1"):
        UnlearningEvaluator(forget_target=-0.1)
    method = create_method("GradientAscent", original_lenet, max_epochs=1, target=None, guard=None)
    with pytest.raises(MisconfigurationException, match="UnlearningEvaluator evaluates during the validation phase"):
        make_trainer(1, [UnlearningEvaluator()], limit_val_batches=0).fit(method, datamodule=mnist_dm("class"))
