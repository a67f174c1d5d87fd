"""Shared fixtures: reference models on MNIST-5k are trained once per test session."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pytest
import torch

from lightning_unlearn import (
    ClassForget,
    Classifier,
    RandomForget,
    SubclassForget,
    UnlearningDataModule,
    train_classifier,
    unlearn,
)
from lightning_unlearn.data import ForgetSpec

THREADS = min(2, os.cpu_count() or 1)
torch.set_num_threads(THREADS)
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)

ORIGINAL_EPOCHS = 12
FORGET_CLASS = 3

SCENARIOS: dict[str, ForgetSpec] = {
    "class": ClassForget(FORGET_CLASS),
    "subclass": SubclassForget(FORGET_CLASS, fraction=0.1),
    "random": RandomForget(fraction=0.1),
    "random128": RandomForget(count=128),
    "random512": RandomForget(count=512),
}


@pytest.fixture(autouse=True)
def _fixed_thread_count():
    """Every test starts with the same intra-op thread count, so results do not depend on test order."""
    torch.set_num_threads(THREADS)
    yield


def make_datamodule(forget: ForgetSpec, **kwargs) -> UnlearningDataModule:
    """MNIST-5k with 10% held out as D_new and 5% as D_ref (the training split is the same for every scenario)."""
    options = {"seed": 0, "new_fraction": 0.1, "ref_fraction": 0.05, "batch_size": 64}
    options.update(kwargs)
    return UnlearningDataModule("mnist5k", forget=forget, **options)


@pytest.fixture(scope="session")
def mnist_dm() -> Callable[[str], UnlearningDataModule]:
    """Factory: the MNIST-5k data module of a named scenario (see SCENARIOS)."""
    cache: dict[str, UnlearningDataModule] = {}

    def get(scenario: str) -> UnlearningDataModule:
        if scenario not in cache:
            cache[scenario] = make_datamodule(SCENARIOS[scenario])
            cache[scenario].setup()
        return cache[scenario]

    return get


@pytest.fixture(scope="session")
def original_lenet(mnist_dm) -> Classifier:
    """LeNet-5 trained on the whole MNIST-5k training split (shared by every scenario). Do not modify."""
    model = train_classifier(mnist_dm("class"), "lenet5", max_epochs=ORIGINAL_EPOCHS, lr=1e-3, seed=0)
    model.eval()
    return model


@pytest.fixture(scope="session")
def retrained_lenet(mnist_dm, original_lenet) -> Callable[[str], torch.nn.Module]:
    """Factory: the gold-standard LeNet-5 retrained on D_r of a named scenario (cached)."""
    cache: dict[str, torch.nn.Module] = {}

    def get(scenario: str) -> torch.nn.Module:
        if scenario not in cache:
            cache[scenario] = unlearn(original_lenet, mnist_dm(scenario), method="retrain", max_epochs=ORIGINAL_EPOCHS, lr=1e-3)
            cache[scenario].eval()
        return cache[scenario]

    return get
