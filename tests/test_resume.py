"""A run killed in the middle of an epoch and resumed from its checkpoint ends with the weights of an uninterrupted run.

Each case runs three fits on the bundled digits data: the whole run; the same run writing a
checkpoint every ``every`` steps (not a multiple of the epoch length) and killed by an exception
a step after the checkpoint it resumes from; the resumption from that mid-epoch checkpoint.
Weights and buffers are compared with ``torch.equal``: the resumed run repeats the same
operations on the same batches in the same order on the same CPU, so its result is the same to
the bit, and any tolerance would hide a resumption that repeats or skips a batch (an off-by-one
batch moves the weights by 1e-4 to 1e-2 here).
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
from lightning_unlearn.api import create_method


class Killed(Exception):
    """The kill: raised after a training step, as a crash or a pre-empted job would end the run."""


class KillAt(Callback):
    def __init__(self, batches: int) -> None:
        self.batches, self.seen = batches, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen >= self.batches:
            raise Killed


@pytest.fixture(scope="module")
def digits():
    """Class 2 of digits forgotten: 5 forget batches and 41 retain batches of 32 per epoch."""
    dm = UnlearningDataModule("digits", forget=ClassForget(2), batch_size=32, seed=0)
    return dm, train_classifier(dm, "lenet5", max_epochs=2, seed=0)


NO_REQUEST = dict(target=None, guard=None)
# name, options, checkpoint every, the checkpoint resumed from (its step), what the resumption crosses
CASES = [
    ("SU", dict(max_epochs=3, **NO_REQUEST), 3, 6),  # epoch 1, after its 1st of 5 batches
    ("SULI", dict(layers=2, epochs_per_layer=2, max_epochs=4, **NO_REQUEST), 4, 8),  # 3 batches a layer: epoch 2, layer 1
    ("PRU", dict(max_epochs=3, **NO_REQUEST), 3, 6),  # the classifier phase of epochs 1 and 2 comes after the resumption
    ("UGradSL", dict(max_epochs=3, **NO_REQUEST), 3, 6),  # forget and retain loaders both resumed
    ("SalUn", dict(max_epochs=3, **NO_REQUEST), 3, 6),
    ("SCRUB", dict(msteps=1, max_epochs=2, **NO_REQUEST), 3, 3),  # in the max epoch, the retain loader advancing unused
    # The default request: its checks, best state and step budget travel in the checkpoint too.
    ("SU", dict(max_steps=14, check_every=4), 3, 6),  # reaches its target at step 9
    ("UGradSL", dict(max_steps=14, check_every=4, lr=3e-4, p=0.8), 3, 9),  # reaches its target at step 11 (slower than the defaults)
    ("SCRUB", dict(msteps=1, max_steps=14, check_every=4), 5, 10),  # in the min epoch (forget loader exhausted); budget
]


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(original, dm, name, options, **kwargs):
    method = create_method(name, original, seed=0, **options)
    model = unlearn(original, dm, method=method, trainer_kwargs={"limit_val_batches": 0}, **kwargs)
    return method, _weights(model)


def _kill_and_resume(original, dm, name, options, every, resume_step, tmp_path):
    """The whole run, and the run killed after ``resume_step`` then resumed from its checkpoint of that step."""
    whole, expected = _run(original, dm, name, options)
    every_k = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=every, save_top_k=-1, filename="{step}")
    with pytest.raises(Killed):
        _run(original, dm, name, options, callbacks=[every_k, KillAt(resume_step + 1)])
    ckpt = tmp_path / f"step={resume_step}.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    resumed, weights = _run(original, dm, name, options, ckpt_path=ckpt)
    assert resumed.trainer.global_step == whole.trainer.global_step
    differing = [k for k in expected if not torch.equal(expected[k], weights[k])]
    assert not differing, f"{name}: {differing} differ (max |Δ| {max((expected[k] - weights[k]).abs().max() for k in differing):.2e})"
    return whole, resumed, saved


@pytest.mark.parametrize(("name", "options", "every", "resume_step"), CASES,
                         ids=[f"{c[0]}-{'fixed' if c[1].get('target', 'auto') is None else 'request'}" for c in CASES])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(digits, tmp_path, name, options, every, resume_step):
    dm, original = digits
    whole, resumed, saved = _kill_and_resume(original, dm, name, options, every, resume_step, tmp_path)
    batches = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["ready"]
    assert 0 < batches < whole.trainer.num_training_batches, "the checkpoint is not in the middle of an epoch"
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"], "the loaders' places were not saved"
    if name == "SCRUB":
        assert resumed.phase_log == whole.phase_log
    if whole.outcome is not None and whole.outcome.target is not None:
        a, b = whole.outcome, resumed.outcome
        assert (b.steps, b.history, b.returned_step, b.stopped_by) == (a.steps, a.history, a.returned_step, a.stopped_by)


def test_a_run_killed_on_the_last_batch_of_an_epoch_resumes_in_the_next(digits, tmp_path):
    """Lightning resumes such a checkpoint in the next epoch without its on_train_epoch_start: SULI's
    next layer still gets its targets, and the loaders start the new epoch at its first batch."""
    dm, original = digits
    options = dict(layers=2, epochs_per_layer=1, max_epochs=4, **NO_REQUEST)  # a layer of 3 batches per epoch
    whole, resumed, saved = _kill_and_resume(original, dm, "SULI", options, 3, 3, tmp_path)
    assert saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["is_last_batch"]


def test_a_model_with_dropout_resumes_with_the_same_random_draws(digits, tmp_path):
    """The global random state travels in the checkpoint; loaders re-created for the resumed epoch draw nothing from it."""
    dm, _ = digits
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(32, dm.num_classes))
    for name in ("SU", "UGradSL"):
        _kill_and_resume(model, dm, name, dict(max_epochs=2, **NO_REQUEST), 3, 6, tmp_path / name)


def test_the_cli_resumes_a_run_killed_mid_epoch(digits, tmp_path):
    from lightning_unlearn.cli import main

    dm, original = digits
    torch.save({"state_dict": original.state_dict(), "hyper_parameters": dict(original.hparams)}, tmp_path / "original.pt")
    args = ["unlearn", "--method", "SU", "--method.checkpoint", str(tmp_path / "original.pt"), "--method.target", "null",
            "--method.guard", "null", "--method.max_epochs", "3", "--data.dataset", "digits",
            "--data.forget", "lightning_unlearn.ClassForget", "--data.forget.classes", "[2]", "--data.batch_size", "32"]
    main([*args, "--output", str(tmp_path / "whole")])
    checkpoints = ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps=3",
                   f"--trainer.callbacks.dirpath={tmp_path / 'ckpt'}", "--trainer.callbacks.save_top_k=-1",
                   "--trainer.callbacks.filename={step}"]
    main([*args, *checkpoints, "--trainer.max_steps", "7", "--output", str(tmp_path / "stopped")])  # stopped after step 7
    main([*args, "--ckpt_path", str(tmp_path / "ckpt" / "step=6.ckpt"), "--output", str(tmp_path / "resumed")])
    whole, stopped, resumed = (torch.load(tmp_path / run / "model.pt", weights_only=True)["state_dict"]
                               for run in ("whole", "stopped", "resumed"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not all(torch.equal(whole[k], stopped[k]) for k in whole)  # the run was stopped before its end


def test_resuming_from_a_file_without_training_state_is_refused(digits, tmp_path):
    dm, original = digits
    path = tmp_path / "weights.pt"
    torch.save(original.state_dict(), path)
    with pytest.raises(ValueError, match="`ckpt_path` .* holds no training state to resume"):
        unlearn(original, dm, method="SU", ckpt_path=path)
    with pytest.raises(FileNotFoundError, match="`ckpt_path` .* does not exist"):
        unlearn(original, dm, method="SU", ckpt_path=tmp_path / "missing.ckpt")
