"""Any torch.optim optimiser and learning-rate schedule, from Python, the command line and YAML.

``optimizer`` takes a shortcut name or a callable ``(params) -> Optimizer`` and ``lr_scheduler`` a
callable ``(optimizer) -> schedule`` (LightningCLI's OptimizerCallable / LRSchedulerCallable):
single-optimiser methods, PRU's two optimisers, PS's own head training and the Classifier use
them; the request's back-off and speed-up scale a schedule's rates with the optimiser's; the
hyper-parameters record them as plain ``class_path`` records, so checkpoints still load with
``weights_only=True``. Sklearn digits, budgets of a few epochs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau, StepLR

from lightning_unlearn import PRU, PS, ClassForget, Classifier, GradientAscent, UnlearningDataModule, make_trainer, unlearn
from lightning_unlearn.cli import UnlearningCLI, main
from lightning_unlearn.optim import check_optimizer, check_scheduler, record
from lightning_unlearn.request import ServeRequest, _copy_optimizers, _copy_state

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

ONE_THREAD = True  # read by conftest's thread fixture: small models, CLI runs

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["--data", str(REPO / "examples" / "configs" / "data.yaml"), "--data.dataset", "digits"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SGD = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)
HALVING = functools.partial(StepLR, step_size=1, gamma=0.5)
FIXED = {"target": None, "guard": None}  # the fixed budget: the epochs run are the epochs asked for


@pytest.fixture(scope="module")
def dm() -> UnlearningDataModule:
    datamodule = UnlearningDataModule("digits", forget=ClassForget(0))
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def original(dm) -> Classifier:
    """A LeNet-5 on digits trained two epochs by the Classifier's own shortcut (the default Adam)."""
    torch.manual_seed(0)
    model = Classifier("lenet5", 10, (1, 8, 8), lr=0.004)
    make_trainer(2, limit_val_batches=0).fit(model, datamodule=dm)
    return model.eval()


def _lrs(trainer) -> list[float]:
    return [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]


# ------------------------------------------------------------------------------------ from Python
def test_a_single_optimiser_method_runs_the_callable_and_steps_its_schedule(dm, original, tmp_path):
    method = GradientAscent(original, optimizer=SGD, lr_scheduler=HALVING, max_epochs=3, **FIXED)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    logger = CSVLogger(tmp_path / "logs", name="run")
    trainer = make_trainer(3, [saver], enable_checkpointing=True, logger=logger, limit_val_batches=0)
    trainer.fit(method, datamodule=dm)

    (optimizer,) = trainer.optimizers
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    assert _lrs(trainer) == [pytest.approx(0.05 * 0.5**3)]  # three epochs, three halvings
    assert not torch.equal(method.model.model.features[0].weight, original.model.features[0].weight)
    # the hyper-parameters record the callables as plain records: YAML, and a checkpoint read with weights_only
    assert method.hparams.optimizer == {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.9}}
    assert method.hparams.lr_scheduler == {"class_path": "torch.optim.lr_scheduler.StepLR",
                                           "init_args": {"step_size": 1, "gamma": 0.5}}
    logged = yaml.safe_load((Path(logger.log_dir) / "hparams.yaml").read_text())
    assert logged["optimizer"] == method.hparams.optimizer and logged["lr_scheduler"] == method.hparams.lr_scheduler
    payload = torch.load(saver.last_model_path, weights_only=True)
    assert payload["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.SGD"
    # ... and the method loads back with the optimiser and schedule it ran with
    loaded = GradientAscent.load_from_checkpoint(saver.last_model_path, model=Classifier("lenet5", 10, (1, 8, 8)))
    config = loaded.configure_optimizers()
    assert type(config["optimizer"]) is torch.optim.SGD and config["optimizer"].defaults["lr"] == 0.05
    assert type(config["lr_scheduler"]["scheduler"]) is StepLR and config["lr_scheduler"]["scheduler"].gamma == 0.5


def test_pru_applies_the_callable_to_each_of_its_optimisers(dm, original):
    method = PRU(original, optimizer=functools.partial(torch.optim.SGD, lr=0.02), lr_scheduler=HALVING,
                 max_epochs=2, **FIXED)
    trainer = make_trainer(2, limit_val_batches=0)
    trainer.fit(method, datamodule=dm)
    backbone, head = trainer.optimizers
    assert type(backbone) is type(head) is torch.optim.SGD
    assert {id(p) for g in head.param_groups for p in g["params"]} == {id(p) for p in method.anatomy.head_parameters()}
    assert {id(p) for g in backbone.param_groups for p in g["params"]} == {
        id(p) for p in method.anatomy.backbone_parameters()}
    assert _lrs(trainer) == [pytest.approx(0.02 * 0.25)] * 2  # each schedule stepped after each epoch's two phases
    # the shortcut keeps its two learning rates
    shortcut = PRU(original, optimizer="sgd", lr=1e-3, head_lr=1e-2)
    assert [o.defaults["lr"] for o in shortcut.configure_optimizers()] == [1e-3, 1e-2]


def test_ps_trains_its_head_with_the_callable_and_steps_its_schedule_each_pass(dm, original):
    made: list[torch.optim.Optimizer] = []

    def rmsprop(params):  # a plain function: used as given, not recorded
        made.append(torch.optim.RMSprop(params, lr=0.01))
        return made[-1]

    method = PS(original, optimizer=rmsprop, lr_scheduler=HALVING, epochs=3, **FIXED)
    assert method.hparams.optimizer == repr(rmsprop)  # plain hyper-parameters: the function is not recorded
    head_before = original.model.fc.weight.detach().clone()
    unlearn(original, dm, method=method)
    steps = [o for o in made if o.state]  # the head training's optimiser (the Trainer's is never stepped)
    assert len(steps) == 1 and steps[0].param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3)
    assert not torch.equal(method.model.model.fc.weight, head_before)
    with pytest.raises(ValueError, match="`lr_scheduler`: PS steps its schedule .* ReduceLROnPlateau cannot apply"):
        unlearn(original, dm, method=PS(original, lr_scheduler=ReduceLROnPlateau, **FIXED))


def test_the_classifier_takes_a_callable_and_a_schedule(dm, tmp_path):
    model = Classifier("lenet5", 10, (1, 8, 8), optimizer=functools.partial(torch.optim.AdamW, lr=0.01),
                       lr_scheduler=HALVING)
    trainer = make_trainer(2, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert type(trainer.optimizers[0]) is torch.optim.AdamW and _lrs(trainer) == [pytest.approx(0.0025)]
    trainer.save_checkpoint(tmp_path / "clf.ckpt")
    loaded = Classifier.load_from_checkpoint(tmp_path / "clf.ckpt", weights_only=True)
    assert loaded.hparams.optimizer == {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}}
    assert type(loaded.configure_optimizers()["optimizer"]) is torch.optim.AdamW


def test_records_and_checks():
    assert record(SGD) == {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.9}}
    assert record(torch.optim.Adam) == {"class_path": "torch.optim.Adam", "init_args": {}}
    made = check_optimizer(record(SGD))(nn.Linear(2, 2).parameters())  # a record is a callable again
    assert type(made) is torch.optim.SGD and made.defaults["lr"] == 0.05
    lam = functools.partial(LambdaLR, lr_lambda=lambda epoch: 0.5)  # an argument that is not plain: not recorded
    assert record(lam) == repr(lam) and check_scheduler(lam) is lam and record("adam") == "adam"
    with pytest.raises(ValueError, match="names 'nowhere.Optimizer', which is not an imported Optimizer class"):
        check_optimizer({"class_path": "nowhere.Optimizer", "init_args": {}})
    with pytest.raises(ValueError, match="not an imported LRScheduler or ReduceLROnPlateau class"):
        check_scheduler({"class_path": "torch.optim.SGD"})


# ------------------------------------------------------------------------ the request's rate changes
def _request_with_schedule(schedule):
    """A request whose best checked state was saved at lr 0.1; the schedule then stepped twice."""
    module = nn.Module()  # a method: its classifier as ``model``
    module.model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(module.model.parameters(), lr=0.1)
    scheduler = schedule(optimizer)
    trainer = SimpleNamespace(optimizers=[optimizer], lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)])
    request = ServeRequest()
    request.history, request.base_lrs, request.interval, request.steps = [{"step": 0.0}], [[0.1]], 8, 16
    request.best = (1.0, 0, _copy_state(module), _copy_optimizers(trainer))
    optimizer.step()  # (no gradients: nothing moves; the schedule then steps after the optimiser, as in training)
    scheduler.step()
    scheduler.step()
    return request, trainer, module, optimizer, scheduler


@pytest.mark.parametrize("schedule", [HALVING, functools.partial(LambdaLR, lr_lambda=lambda epoch: 0.5**epoch)],
                         ids=["StepLR", "LambdaLR"])
def test_back_off_and_speed_up_scale_the_schedule_where_it_has_got_to(schedule):
    request, trainer, module, optimizer, scheduler = _request_with_schedule(schedule)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)  # the schedule's own rate at epoch 2
    assert request._back_off(trainer, module, "guard")
    # half the schedule's rate of the moment, not half the rate the saved state held (0.05)
    assert request.lr_scale == 0.5 and optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)
    scheduler.step()  # the next epoch: still half the schedule's own rate (0.0125), not the schedule's
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 0.0125)
    request.lr_scale *= 2  # a speed-up (as _speed_up does once it decides)
    request._set_lrs(trainer, 2.0)
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)  # the schedule's own rate again


def test_back_off_without_a_schedule_halves_the_rates_of_the_run():
    request, trainer, module, optimizer, _ = _request_with_schedule(lambda o: StepLR(o, step_size=10**6))
    trainer.lr_scheduler_configs = []
    assert request._back_off(trainer, module, "guard") and optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert request._back_off(trainer, module, "guard") and optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


# ------------------------------------------------------------------------------- command line and YAML
@pytest.fixture(scope="module")
def fit_ckpt(tmp_path_factory) -> Path:
    """`lightning-unlearn fit` with `--model.optimizer` and `--model.lr_scheduler` flags."""
    work = tmp_path_factory.mktemp("fit")
    main(["fit", "--config", str(REPO / "examples" / "configs" / "fit.yaml"), "--data.dataset", "digits",
          "--trainer.max_epochs", "2", "--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "0.05",
          "--model.optimizer.momentum", "0.9", "--model.lr_scheduler", "torch.optim.lr_scheduler.StepLR",
          "--model.lr_scheduler.step_size", "1", "--model.lr_scheduler.gamma", "0.5",
          "--trainer.default_root_dir", str(work), "--output", str(work / "original.ckpt")])
    return work / "original.ckpt"


def test_fit_takes_an_optimizer_and_a_schedule_by_flags(fit_ckpt):
    payload = torch.load(fit_ckpt, weights_only=True)
    assert payload["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.SGD"
    assert [g["lr"] for g in payload["optimizer_states"][0]["param_groups"]] == [pytest.approx(0.05 * 0.25)]
    assert payload["optimizer_states"][0]["param_groups"][0]["momentum"] == 0.9
    loaded = Classifier.load_from_checkpoint(fit_ckpt)
    assert type(loaded.configure_optimizers()["optimizer"]) is torch.optim.SGD


def test_unlearn_takes_them_by_flags_and_by_the_yaml_print_config_writes(fit_ckpt, tmp_path, capsys):
    flags = ["unlearn", *QUIET, "--method", "SU", "--method.checkpoint", str(fit_ckpt), *DIGITS,
             "--method.optimizer", "torch.optim.SGD", "--method.optimizer.lr", "0.01",
             "--method.optimizer.momentum", "0.9", "--method.lr_scheduler", "torch.optim.lr_scheduler.StepLR",
             "--method.lr_scheduler.step_size", "1", "--method.max_epochs", "2", "--method.target", "null",
             "--method.guard", "null"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*flags, "--output", str(tmp_path / "never"), "--print_config"])
    printed = capsys.readouterr().out
    init_args = yaml.safe_load(printed)["method"]["init_args"]
    assert init_args["optimizer"]["class_path"] == "torch.optim.SGD" and init_args["optimizer"]["init_args"]["lr"] == 0.01
    assert init_args["lr_scheduler"]["init_args"]["step_size"] == 1
    config = tmp_path / "su.yaml"
    config.write_text(printed.replace(str(tmp_path / "never"), str(tmp_path / "run")))

    cli = UnlearningCLI(args=["unlearn", "--config", str(config)])  # the YAML form
    (optimizer,) = cli.trainer.optimizers
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    assert _lrs(cli.trainer) == [pytest.approx(0.01 * 0.1**2)]  # StepLR's default gamma, two epochs
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["method_hparams"]
    assert saved["optimizer"] == init_args["optimizer"] and saved["lr_scheduler"]["class_path"].endswith("StepLR")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["method"]["init_args"]["optimizer"] == (
        init_args["optimizer"])


def test_help_lists_them(capsys):
    with pytest.raises(SystemExit):
        main(["unlearn", "--method.help", "GradientAscent"])
    out = capsys.readouterr().out
    assert "--method.optimizer OPTIMIZER" in out and "--method.lr_scheduler LR_SCHEDULER" in out
    assert "torch.optim.SGD" in out and "torch.optim.lr_scheduler.StepLR" in out
