"""One battery over every registered method: fit → unlearn → evaluate → save/load → resume.

Runs on scikit-learn's 8×8 digits with a tiny LeNet-5 so that every method, present and
future, is exercised by the same contract in a few seconds.
"""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_unlearn import ClassForget, UnlearningDataModule, available_methods, create_method, get_method
from lightning_unlearn.api import make_trainer, train_classifier
from lightning_unlearn.callbacks import PrototypeRecorder
from lightning_unlearn.evaluation import evaluate
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods import load_model_weights
from lightning_unlearn.models import LeNet5

METHODS = available_methods()


@pytest.fixture(scope="module")
def world():
    dm = UnlearningDataModule("digits", forget=ClassForget(2), batch_size=32, new_fraction=0.1, ref_fraction=0.1)
    recorder = PrototypeRecorder()
    original = train_classifier(dm, "lenet5", max_epochs=4, seed=0, callbacks=[recorder])
    return dm, original, recorder


def build(name: str, world, **options):
    """The method with a small fixed budget (no target, no guard: the contract of its mechanics).

    Inputs a method asks for by name are supplied from the world.
    """
    dm, original, recorder = world
    options.setdefault("target", None)
    options.setdefault("guard", None)
    params = inspect.signature(get_method(name).__init__).parameters
    if "recording" in params:
        options["recording"] = copy.deepcopy(recorder.recording)
    return create_method(name, original, **options)


def fit(method, dm, max_epochs: int, **trainer_kwargs):
    torch.manual_seed(0)
    make_trainer(max_epochs, limit_val_batches=0, **trainer_kwargs).fit(method, datamodule=dm)
    return method


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", METHODS)
def test_method_contract(name, world, tmp_path):
    dm, original, _ = world
    before = state(original)
    budget = min(build(name, world).hparams.max_epochs, 2)  # keep Retrain & co. short; closed forms run 0 epochs
    method = fit(build(name, world, max_epochs=budget), dm, max_epochs=max(budget, 1))
    unlearned = method.unlearned_model

    # The user's model is untouched, the unlearned copy has the same architecture.
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in before.items())
    assert type(unlearned) is type(original)
    assert method.runtime_s > 0
    changed = any(not torch.equal(v, before[k]) for k, v in unlearned.state_dict().items())
    assert changed, f"{name} did not change the model"

    report = evaluate(unlearned, dm, original=original)
    acc = report.models["unlearned"].accuracy
    assert all(0.0 <= v <= 1.0 for v in acc.values()) and math.isfinite(report.models["unlearned"].unlearning_accuracy)

    path = method.save_unlearned(tmp_path / "unlearned.pt")
    reloaded = copy.deepcopy(original)
    load_model_weights(reloaded, path)
    assert all(torch.equal(v, unlearned.state_dict()[k]) for k, v in reloaded.state_dict().items())


@pytest.mark.parametrize("name", METHODS)
def test_resume_continues_identically(name, world, tmp_path):
    dm, _, _ = world
    if build(name, world).hparams.max_epochs == 0:
        pytest.skip(f"{name} is a one-shot method (0 epochs): there is no mid-run state to resume")
    straight = fit(build(name, world, max_epochs=2), dm, max_epochs=2)

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit(build(name, world, max_epochs=2), dm, max_epochs=1, callbacks=[ckpt], enable_checkpointing=True)
    resumed = build(name, world, max_epochs=2)
    torch.manual_seed(0)
    again = ModelCheckpoint(dirpath=tmp_path / "resumed", save_last=True)
    trainer = make_trainer(2, [again], limit_val_batches=0, enable_checkpointing=True)
    trainer.fit(resumed, datamodule=dm, ckpt_path=str(tmp_path / "last.ckpt"))

    for key, value in state(straight.unlearned_model).items():
        torch.testing.assert_close(resumed.unlearned_model.state_dict()[key], value, msg=f"{name}: {key} differs after resume")


def test_every_method_is_documented_and_typed():
    for name in METHODS:
        cls = get_method(name)
        doc = inspect.getdoc(cls) or ""
        assert "Args:" in doc and "Example" in doc, f"{name} docstring lacks Args/Example"
        assert cls.paper, f"{name} does not cite its paper"
        for pname, param in inspect.signature(cls.__init__).parameters.items():
            if pname == "self":
                continue
            assert param.kind != param.VAR_POSITIONAL, f"{name} takes *{pname}"
            assert param.kind == param.VAR_KEYWORD or param.annotation is not inspect.Parameter.empty, (
                f"{name}.{pname} has no type (LightningCLI needs it)"
            )


def test_every_method_shows_every_base_option_to_the_cli():
    """Methods pass the base arguments on by keyword (``**kwargs``); LightningCLI still lists each of them."""
    from jsonargparse import ArgumentParser

    base = [p for p in inspect.signature(UnlearningMethod.__init__).parameters if p not in ("self", "model")]
    for name in METHODS:
        parser = ArgumentParser()
        parser.add_class_arguments(get_method(name), "method")
        keys = {action.dest for action in parser._actions}
        missing = [p for p in base if f"method.{p}" not in keys]
        assert not missing, f"{name}: the CLI does not see {missing}"
        parsed = parser.parse_args(["--method.target=0.05", "--method.strict=true", "--method.lr=0.5"]) if name != "NaivePS" else None
        if parsed is not None:
            assert (parsed.method.target, parsed.method.strict, parsed.method.lr) == (0.05, True, 0.5)


def test_the_cli_sees_lenet_checkpoints(world, tmp_path):
    """A method can be built from a network plus a checkpoint of its weights (the CLI's path)."""
    dm, original, _ = world
    torch.save(original.model.state_dict(), tmp_path / "w.pt")
    method = create_method("FineTune", LeNet5(10, 1, 8), checkpoint=str(tmp_path / "w.pt"))
    assert all(torch.equal(a, b) for a, b in zip(method.model.state_dict().values(), original.model.state_dict().values()))
