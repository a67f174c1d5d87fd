"""How a method reaches its data: it declares its training data, the data module builds the loaders,
and the method reads other splits through its one accessor, ``datamodule``."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import SequentialSampler

from lightning_unlearn import ClassForget, UnlearningDataModule
from lightning_unlearn.data import TrainingData
from lightning_unlearn.data.resumable import ResumableDataLoader
from lightning_unlearn.methods import SCRUB, SU, FineTune, NegGradPlus, SalUn, UGradSL, UGradSLPlus
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.models import LeNet5


@pytest.fixture(scope="module")
def dm() -> UnlearningDataModule:
    dm = UnlearningDataModule("digits", forget=ClassForget(3), batch_size=32)
    dm.setup()
    return dm


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"splits": ()}, "one or two distinct split names"),
        ({"splits": "forget"}, "one or two distinct split names"),
        ({"splits": ("forget", "forget")}, "one or two distinct split names"),
        ({"splits": ("forget", "retain", "test")}, "one or two distinct split names"),
        ({"splits": ("forgt",)}, "one or two distinct split names"),
        ({"splits": ("forget",), "epoch": "forget"}, "`epoch` must be None or one of two splits"),
        ({"splits": ("forget", "retain"), "epoch": "test"}, "`epoch` must be None or one of two splits"),
        ({"splits": ("forget", "retain"), "sampler": SequentialSampler}, "`sampler` orders a single split"),
    ],
)
def test_a_bad_declaration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingData(**kwargs)


def test_the_declared_pairing_decides_the_epoch(dm):
    n_forget, n_retain = len(dm.dataloader("forget", shuffle=True)), len(dm.dataloader("retain", shuffle=True))
    assert n_forget < n_retain
    modes = {epoch: dm.training_loader(TrainingData(("forget", "retain"), epoch=epoch))._mode
             for epoch in ("forget", "retain", None)}
    assert modes == {"forget": "min_size", "retain": "max_size_cycle", None: "max_size"}
    # The families declare it: UGradSL and SalUn pass over D_f, UGradSL+ and NegGrad+ over D_r, SCRUB over both.
    for cls, mode in ((UGradSL, "min_size"), (SalUn, "min_size"), (UGradSLPlus, "max_size_cycle"),
                      (NegGradPlus, "max_size_cycle"), (SCRUB, "max_size")):
        loader = dm.training_loader(cls(LeNet5(10, 1, 8)).training_data)
        assert loader._mode == mode, cls.__name__
        iter(loader)
        assert len(loader) == {"min_size": n_forget, "max_size_cycle": n_retain, "max_size": n_retain}[mode]


def test_a_declared_split_is_the_data_modules_shuffled_loader(dm):
    for cls, split in ((SU, "forget"), (FineTune, "retain")):
        loader = dm.training_loader(cls(LeNet5(10, 1, 8)).training_data)
        assert isinstance(loader, ResumableDataLoader)
        expected = dm.dataloader(split, shuffle=True)
        assert torch.equal(next(iter(loader))[2], next(iter(expected))[2])


def test_a_declared_sampler_orders_the_split(dm):
    def backwards(dataset):
        return list(range(len(dataset)))[::-1]

    loader = dm.training_loader(TrainingData(("forget",), sampler=backwards, batch_size=4))
    assert isinstance(loader, ResumableDataLoader)
    assert next(iter(loader))[2].tolist() == dm.forget_indices[::-1][:4].tolist()


def test_without_a_data_module_the_accessor_says_how_to_fit():
    with pytest.raises(MisconfigurationException, match=r"^SU reads its data from the Trainer's UnlearningDataModule, but"
                       r" it is not attached to a Trainer: fit it with `trainer.fit\(method, datamodule="):
        SU(LeNet5(10, 1, 8)).datamodule


def test_an_override_of_the_old_hook_is_refused_not_ignored():
    with pytest.raises(TypeError, match=r"Custom.unlearning_dataloader is no longer called: declare .*`training_data`"):
        class Custom(UnlearningMethod):
            def unlearning_dataloader(self, datamodule):
                return datamodule.dataloader("retain", shuffle=True)
