"""RelearningProbe: runs the relearning test after unlearning, logs the curve, keeps a resumable result."""

from __future__ import annotations

import csv

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_unlearn import ClassForget, UnlearningDataModule, create_method, make_trainer
from lightning_unlearn.callbacks import RelearningProbe
from lightning_unlearn.relearning import relearn


def test_probe_records_the_relearning_curve(mnist_dm, original_lenet, tmp_path):
    dm = mnist_dm("class")
    probe = RelearningProbe(epochs=2, lr=1e-2, threshold=0.5)
    method = create_method("GradientAscent", original_lenet, max_epochs=1, lr=2e-3, target=None, guard=None)  # one fixed epoch
    logger = CSVLogger(tmp_path, name="run")
    make_trainer(1, [probe], limit_val_batches=0, logger=logger, log_every_n_steps=1).fit(method, datamodule=dm)

    result = probe.result
    assert result is not None and result.probe_split == "test_forget" and len(result.forget_accuracy) == 3
    # Same curve as the relearning test run by hand on the unlearned model (deterministic, the model is unchanged).
    direct = relearn(method.unlearned_model, dm, epochs=2, lr=1e-2, threshold=0.5)
    assert result.forget_accuracy == pytest.approx(direct.forget_accuracy) and result.relearn_epochs == direct.relearn_epochs
    assert probe.probe_time_s > 0
    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    relearn_rows = [r for r in rows if r.get("relearn/forget_acc")]
    assert [float(r["relearn/forget_acc"]) for r in relearn_rows] == pytest.approx(result.forget_accuracy)
    # Its own axis (relearn/epoch), on logger steps after every step of unlearning: no step is reused or goes back.
    assert [int(r["relearn/epoch"]) for r in relearn_rows] == [0, 1, 2]
    steps = [int(r["step"]) for r in relearn_rows]
    training_steps = [int(r["step"]) for r in rows if not r.get("relearn/forget_acc")]
    assert training_steps and steps == list(range(steps[0], steps[0] + 3)) and steps[0] > max(training_steps)
    restored = RelearningProbe(epochs=2, lr=1e-2, threshold=0.5)
    restored.load_state_dict(probe.state_dict())
    assert restored.result == result


def test_probe_rejects_bad_configuration(original_lenet):
    with pytest.raises(ValueError, match="`epochs` must be >= 1, got 0"):
        RelearningProbe(epochs=0)
    with pytest.raises(ValueError, match=r"`threshold` must be in \[0, 1\] or None, got 2"):
        RelearningProbe(threshold=2)
    no_new = UnlearningDataModule("mnist5k", forget=ClassForget(3), seed=0)
    method = create_method("GradientAscent", original_lenet, max_epochs=1)
    with pytest.raises(MisconfigurationException, match="RelearningProbe needs .* non-empty D_new"):
        make_trainer(1, [RelearningProbe()], limit_val_batches=0).fit(method, datamodule=no_new)


def test_relearning_defaults_to_the_papers_momentum(mnist_dm, original_lenet):
    """PRU §5.1: the probe keeps the original training's SGD momentum (0.9); only the lr changes."""
    dm = mnist_dm("class")
    default = relearn(original_lenet, dm, epochs=3).forget_accuracy
    assert default == relearn(original_lenet, dm, epochs=3, momentum=0.9).forget_accuracy
    assert default != relearn(original_lenet, dm, epochs=3, momentum=0.0).forget_accuracy
    assert RelearningProbe().momentum == 0.9


def test_relearning_runs_under_the_precision_of_the_trainer_it_is_given(mnist_dm, original_lenet):
    """With the run's Trainer (as the probe passes it), the relearning steps run under its precision: bf16 autocast
    on the CPU here, as the unlearning steps did; without one, in float32. The model given is never changed."""
    from lightning.pytorch import Trainer

    dm = mnist_dm("class")
    dtypes: list[torch.dtype] = []
    hook = original_lenet.model.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    try:
        before = {k: v.clone() for k, v in original_lenet.state_dict().items()}
        plain = relearn(original_lenet, dm, epochs=1)
        assert dtypes and set(dtypes) == {torch.float32}
        dtypes.clear()
        trainer = Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", logger=False, enable_progress_bar=False)
        mixed = relearn(original_lenet, dm, epochs=1, trainer=trainer)
    finally:
        hook.remove()
    assert torch.bfloat16 in dtypes  # the training forwards (the probe passes stay in float32: they use no autocast)
    assert all(torch.equal(v, before[k]) for k, v in original_lenet.state_dict().items())
    assert mixed.forget_accuracy[0] == plain.forget_accuracy[0]  # the same model before relearning
    assert 0.0 <= mixed.forget_accuracy[1] <= 1.0
