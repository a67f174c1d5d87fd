"""``freeze_batchnorm``: the model's BatchNorm layers keep the statistics of the original training while a
method trains (on D_f alone they would otherwise be re-estimated from the forgotten samples only)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_unlearn import ClassForget, UnlearningDataModule, create_method
from lightning_unlearn.api import make_trainer

# Methods whose steps run the whole model in train mode through the Trainer's loop (the one-shot methods and
# PS train no BatchNorm statistics in either case; Retrain refuses the option).
TRAINING = ["SU", "SULI", "DeltaTargeted", "GradientAscent", "RandomLabel", "NegGradPlus", "UGradSL", "SCRUB",
            "SalUn", "FineTune", "PRU", "BoundaryShrink"]


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10),
    )


@pytest.fixture(scope="module")
def dm() -> UnlearningDataModule:
    return UnlearningDataModule("digits", forget=ClassForget(3), batch_size=32, ref_fraction=0.1)


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def _run(name: str, dm: UnlearningDataModule, freeze: bool) -> tuple[nn.Module, nn.Module]:
    original = _bn_net()
    method = create_method(name, original, target=None, guard=None, max_steps=4, freeze_batchnorm=freeze, seed=0)
    make_trainer(1, limit_val_batches=0).fit(method, datamodule=dm)
    return original, method.unlearned_model


@pytest.mark.parametrize("name", TRAINING)
def test_frozen_batchnorm_keeps_the_running_statistics(name, dm):
    original, unlearned = _run(name, dm, freeze=True)
    before, after = _buffers(original), _buffers(unlearned)
    assert before.keys() == after.keys() and before
    for key in before:
        assert torch.equal(before[key], after[key]), f"{name} changed {key} with freeze_batchnorm=True"
    moved = [k for k, v in original.state_dict().items() if k not in before and not torch.equal(v, unlearned.state_dict()[k])]
    assert moved, f"{name} trained nothing with freeze_batchnorm=True"


@pytest.mark.parametrize("name", ["SU", "NegGradPlus"])
def test_without_the_option_batchnorm_statistics_train(name, dm):
    """The control: the same runs update the running statistics when the option is off (the default)."""
    original, unlearned = _run(name, dm, freeze=False)
    before, after = _buffers(original), _buffers(unlearned)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("running_mean"))


def test_option_is_validated_and_refused_by_retrain():
    with pytest.raises(TypeError, match="`freeze_batchnorm` must be a bool, got 'yes'"):
        create_method("SU", _bn_net(), freeze_batchnorm="yes")
    with pytest.raises(ValueError, match="`freeze_batchnorm=True` would keep the BatchNorm statistics of Retrain"):
        create_method("Retrain", _bn_net(), freeze_batchnorm=True)
