"""The CLI's surface: short ``--help`` pages, the method and network choices, ``evaluate``'s Trainer
options, no spurious "1000 epochs" warning, and ``trainer.test``/``trainer.predict`` on a method.

Runs in-process through ``main(args)`` on sklearn digits with one-epoch originals and tiny budgets.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from lightning_unlearn.cli import CUSTOM_SUBCOMMANDS, LIGHTNING_SUBCOMMANDS, load_classifier, main
from lightning_unlearn.methods import available_methods

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

DIGITS = ["--data.dataset", "digits", "--data.forget", "ClassForget", "--data.forget.classes", "3"]
# Lines of `--help` at 100 columns (measured: 32, 509, 501, 498, 441, 124, 101; before the short class lists and
# descriptions: 29, 1061, 1054, 1052, 449, 647 (786 at 80 columns), 101). The bounds leave room for new options.
HELP_LINES = {"": 45, "fit": 600, "validate": 600, "test": 600, "unlearn": 520, "evaluate": 170, "benchmark": 140}
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


ONE_THREAD = True  # read by conftest's thread fixture


def _help(args: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("subcommand", list(HELP_LINES))
def test_help_is_short_and_lists_no_library_classes(subcommand, capsys, monkeypatch):
    text = _help([subcommand] if subcommand else [], capsys, monkeypatch)
    lines = text.count("\n")
    print(f"lightning-unlearn {subcommand} --help: {lines} lines")
    assert lines <= HELP_LINES[subcommand]
    assert "torch.nn.Linear" not in text and "SoftTargetMethod" not in text and "MixedGradientMethod" not in text


def test_top_level_help_says_what_the_tool_is_and_describes_each_subcommand(capsys, monkeypatch):
    text = " ".join(_help([], capsys, monkeypatch).split())  # unwrapped
    assert "Lightning Trainer command line tool" not in text
    assert text.count("Machine unlearning for PyTorch Lightning classifiers") == 1
    for description in {**LIGHTNING_SUBCOMMANDS, **CUSTOM_SUBCOMMANDS}.values():
        assert "\n" not in description and description in text


def test_method_choices_are_the_registered_methods_and_any_class_path_still_parses(capsys, monkeypatch):
    text = " ".join(_help(["unlearn"], capsys, monkeypatch).split())
    listed = text.split("registered methods (any case): ", 1)[1].split(";", 1)[0]
    assert sorted(listed.split(", ")) == sorted(available_methods())
    # A method's own page lists the networks, not every torch layer.
    text = _help(["unlearn", "--method.help", "FineTune"], capsys, monkeypatch)
    assert "lightning_unlearn.models.LeNet5" in text and "torch.nn.Identity" not in text and text.count("\n") < 120
    # The help is shorter, the parsing is unchanged: any subclass by class path.
    with pytest.raises(SystemExit):
        main(["evaluate", "--unlearned", "x", "--model", "torch.nn.Linear", "--model.in_features", "3",
              "--model.out_features", "2", "--print_config"])
    assert "class_path: torch.nn.Linear" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["unlearn", "--method", "lightning_unlearn.methods.mixed_gradient.MixedGradientMethod", "--print_config"])
    assert "class_path: lightning_unlearn.methods.mixed_gradient.MixedGradientMethod" in capsys.readouterr().out


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("surface")
    path = folder / "original.ckpt"
    main(["fit", "--data.dataset", "digits", "--trainer.max_epochs", "1", "--model.lr", "0.004", *QUIET,
          "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir",
          str(folder), "--output", str(path)])
    return path


@pytest.mark.parametrize("budget", [["--method.max_steps", "3"], ["--method.target", "null", "--method.guard", "null",
                                                                  "--method.max_epochs", "1"]])
def test_unlearn_does_not_warn_about_1000_epochs(budget, original_ckpt, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["unlearn", *QUIET, "--method", "FineTune", "--method.checkpoint", str(original_ckpt), *budget, *DIGITS,
              "--output", str(tmp_path / "run")])
    assert (tmp_path / "run" / "model.pt").is_file()
    assert not [w for w in caught if "1000 epochs" in str(w.message)]


def test_evaluate_takes_trainer_options_and_gives_the_plain_loop_report(original_ckpt, tmp_path, capsys):
    from lightning_unlearn.data import UnlearningDataModule
    from lightning_unlearn.data.forget import ClassForget
    from lightning_unlearn.evaluation import evaluate

    run = tmp_path / "ft"
    main(["unlearn", *QUIET, "--method", "FineTune", "--method.checkpoint", str(original_ckpt), "--method.target", "null",
          "--method.guard", "null", "--method.max_epochs", "1", *DIGITS, "--output", str(run)])
    out = tmp_path / "report.json"
    main(["evaluate", *DIGITS, "--unlearned", str(run), "--original", str(original_ckpt), "--output", str(out),
          "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true"])
    through_trainer = json.loads(out.read_text())
    dm = UnlearningDataModule("digits", forget=ClassForget(3))
    plain = json.loads(json.dumps(evaluate(load_classifier(run), dm, original=load_classifier(original_ckpt)).to_dict(),
                                  default=str))
    for report in (through_trainer, plain):
        report.pop("evaluation_time_s")
    assert through_trainer == plain  # one CPU process: the Trainer's passes give the same outputs
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", *DIGITS, "--unlearned", str(run), "--trainer.accelerator", "cpu", "--trainer.devices", "2"])
    assert exit_info.value.code == 2
    assert "`--trainer.devices` must select one device" in capsys.readouterr().err


def test_trainer_test_and_predict_work_on_a_method(original_ckpt):
    from lightning_unlearn.data import UnlearningDataModule
    from lightning_unlearn.data.forget import ClassForget
    from lightning_unlearn.methods import FineTune
    from lightning_unlearn.outputs import predict_split

    dm = UnlearningDataModule("digits", forget=ClassForget(3))
    method = FineTune(checkpoint=str(original_ckpt))
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    expected = predict_split(method.unlearned_model, dm, "test")
    [results] = trainer.test(method, datamodule=dm, verbose=False)
    assert results == {"test/acc": pytest.approx(expected.accuracy, abs=1e-9)}  # the test split, named so
    batches = trainer.predict(method, datamodule=dm)
    logits = torch.cat(batches)
    assert logits.shape == (len(dm.split_targets("test")), dm.num_classes)
    torch.testing.assert_close(logits, expected.logits)
    fit = Trainer(accelerator="cpu", devices=1, max_epochs=-1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False)
    fit.fit(method, datamodule=dm)  # the method's budget ends the run
    [after] = fit.test(method, datamodule=dm, verbose=False)
    assert after["test/acc"] == pytest.approx(predict_split(method.unlearned_model, dm, "test").accuracy, abs=1e-9)
