"""Shared fixtures: reference models on MNIST-5k are trained once per test session, per seed.

Quality assertions are statistics over ``SEEDS``; the seed changes the held-out split, the forget
draw, the bundled train/test split, the original model's training and the method's own randomness.
``tests/quality.py`` holds the helpers that state and record those statistics.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch

from lightning_unlearn import (
    ClassForget,
    Classifier,
    RandomForget,
    SubclassForget,
    UnlearningDataModule,
    create_method,
    train_classifier,
    unlearn,
)
from lightning_unlearn.data import ForgetSpec

sys.path.insert(0, os.path.dirname(__file__))  # tests import the statistics helpers as `quality`

from quality import FIXED_BUDGET_LR  # noqa: E402  (importable once the line above ran)

THREADS = int(os.environ.get("LU_TEST_THREADS", min(2, os.cpu_count() or 1)))
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
def _fixed_thread_count(request):
    """Every test starts with the same intra-op thread count, so results do not depend on test order: one
    thread in modules that set ``ONE_THREAD = True`` (CLI and subprocess tests, where spinning OpenMP threads
    on a shared 2-core machine cost more than they give), else ``THREADS``."""
    torch.set_num_threads(1 if getattr(request.module, "ONE_THREAD", False) else THREADS)
    yield


def make_datamodule(forget: ForgetSpec, seed: int = 0, **kwargs) -> UnlearningDataModule:
    """MNIST-5k with 10% held out as D_new and 5% as D_ref; ``seed`` moves every split (train/test too)."""
    options = {"seed": seed, "split_seed": seed, "new_fraction": 0.1, "ref_fraction": 0.05, "batch_size": 64}
    options.update(kwargs)
    return UnlearningDataModule("mnist5k", forget=forget, **options)


@pytest.fixture(scope="session")
def mnist_dm() -> Callable[..., UnlearningDataModule]:
    """Factory ``(scenario, seed=0)``: the MNIST-5k data module of a named scenario (see SCENARIOS)."""
    cache: dict[tuple[str, int], UnlearningDataModule] = {}

    def get(scenario: str, seed: int = 0) -> UnlearningDataModule:
        if (scenario, seed) not in cache:
            cache[scenario, seed] = make_datamodule(SCENARIOS[scenario], seed)
            cache[scenario, seed].setup()
        return cache[scenario, seed]

    return get


@pytest.fixture(scope="session")
def lenet_original(mnist_dm) -> Callable[[int], Classifier]:
    """Factory ``seed``: LeNet-5 trained on the seed's MNIST-5k training split (shared by every scenario). Do not modify."""
    cache: dict[int, Classifier] = {}

    def get(seed: int) -> Classifier:
        if seed not in cache:
            model = train_classifier(mnist_dm("class", seed), "lenet5", max_epochs=ORIGINAL_EPOCHS, lr=1e-3, seed=seed)
            cache[seed] = model.eval()
        return cache[seed]

    return get


@pytest.fixture(scope="session")
def original_lenet(lenet_original) -> Classifier:
    """The seed-0 original (tests of mechanics, not of quality). Do not modify."""
    return lenet_original(0)


@pytest.fixture(scope="session")
def lenet_retrained(mnist_dm, lenet_original) -> Callable[[str, int], torch.nn.Module]:
    """Factory ``(scenario, seed)``: the gold-standard LeNet-5 retrained on D_r for its full budget (cached)."""
    cache: dict[tuple[str, int], torch.nn.Module] = {}

    def get(scenario: str, seed: int) -> torch.nn.Module:
        if (scenario, seed) not in cache:
            model = unlearn(lenet_original(seed), mnist_dm(scenario, seed), method="retrain",
                            max_epochs=ORIGINAL_EPOCHS, lr=1e-3, seed=seed, target=None, guard=None)
            cache[scenario, seed] = model.eval()
        return cache[scenario, seed]

    return get


@pytest.fixture(scope="session")
def retrained_lenet(lenet_retrained) -> Callable[[str], torch.nn.Module]:
    """Factory ``scenario``: the seed-0 retrained model."""
    return lambda scenario: lenet_retrained(scenario, 0)


@pytest.fixture(scope="session")
def quality_run(mnist_dm, lenet_original, lenet_retrained) -> Callable[..., dict[str, float]]:
    """Factory ``(method, scenario, seed, stopping=False, **options)``: one unlearning run scored (cached).

    Returns the unlearned model's accuracy on every split of the scenario (``forget``, ``retain``,
    ``test`` and, class-wise, ``test_forget``/``test_retain``), the original's (``original/<split>``)
    and the average gap to the retrained model (``average_gap``, fraction). With ``stopping`` the
    scenario's stopping rule is attached and checked about 8 times per pass, as in the benchmark.
    The method runs without a request (``target=None, guard=None``, the fixed-budget protocol the
    quality statistics were measured under) unless ``options`` pass them.
    """
    from lightning_unlearn.benchmark import check_interval, stopping_rules
    from lightning_unlearn.evaluation import evaluate

    cache: dict[tuple[Any, ...], dict[str, float]] = {}

    def run(method: str, scenario: str, seed: int, stopping: bool = False, **options: Any) -> dict[str, float]:
        options = {"target": None, "guard": None, **options}
        if options["target"] is None and "lr" not in options and method in FIXED_BUDGET_LR:
            options["lr"] = FIXED_BUDGET_LR[method]
        key = (method, scenario, seed, stopping, tuple(sorted(options.items())))
        if key not in cache:
            dm, original = mnist_dm(scenario, seed), lenet_original(seed)
            instance = create_method(method, original, **{"seed": seed, **options})
            callbacks, trainer_kwargs = (None, {})
            if stopping:
                callbacks, trainer_kwargs = stopping_rules(scenario), check_interval(instance, dm)
            model = unlearn(original, dm, method=instance, callbacks=callbacks, trainer_kwargs=trainer_kwargs)
            report = evaluate(model, dm, original=original, reference=lenet_retrained(scenario, seed), loss_mia=False)
            splits = [s for s in ("forget", "retain", "test", "test_forget", "test_retain") if dm.has_split(s)]
            result = {s: report.accuracy(s) for s in splits}
            result.update({f"original/{s}": report.accuracy(s, "original") for s in splits})
            result.update({f"reference/{s}": report.accuracy(s, "reference") for s in splits})
            result["average_gap"] = float(report.average_gap)
            result["steps"] = float(instance.trainer.global_step) if instance._trainer is not None else 0.0
            cache[key] = result
        return cache[key]

    return run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "quality: a statistic over seeds of unlearning quality (see tests/quality.py)")
