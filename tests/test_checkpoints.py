"""What an unlearning run leaves behind: a Lightning checkpoint and a deletion audit record.

The unlearned model loads with Lightning's own ``load_from_checkpoint`` (the user's LightningModule,
or ``Classifier`` for networks built by name), a method's Trainer checkpoint loads with
``Method.load_from_checkpoint``, files of the earlier format still load everywhere, the logged
``hparams.yaml`` is plain YAML, and ``audit.json``'s hashes match the files. Sklearn digits, tiny budgets.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from lightning_unlearn import (
    ClassForget,
    Classifier,
    GradientAscent,
    UnlearningDataModule,
    load_unlearned,
    make_trainer,
    train_classifier,
    unlearn,
)
from lightning_unlearn.cli import load_classifier, main
from lightning_unlearn.checkpoints import load_model_weights, model_from_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["--data", str(REPO / "examples" / "configs" / "data.yaml"), "--data.dataset", "digits"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


class LitModel(L.LightningModule):
    """A user's own LightningModule, nothing from the package in it."""

    def __init__(self, hidden: int = 32, num_classes: int = 10, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _logits(model: nn.Module, dm: UnlearningDataModule) -> torch.Tensor:
    x = torch.cat([batch[0] for batch in dm.dataloader("test")])
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope="module")
def dm() -> UnlearningDataModule:
    datamodule = UnlearningDataModule("digits", forget=ClassForget(0))
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def lit_original(dm) -> LitModel:
    """The user's model (hidden=24, not the default: loading must use the saved hyper-parameters)."""
    torch.manual_seed(0)
    model = LitModel(hidden=24)
    make_trainer(2, limit_val_batches=0).fit(model, datamodule=dm)
    return model.eval()


@pytest.fixture(scope="module")
def fit_ckpt(tmp_path_factory) -> Path:
    """`lightning-unlearn fit` on digits: a Classifier checkpoint that records its architecture."""
    work = tmp_path_factory.mktemp("fit")
    path = work / "original.ckpt"
    main(["fit", "--config", str(REPO / "examples" / "configs" / "fit.yaml"), "--data.dataset", "digits",
          "--trainer.max_epochs", "1", "--model.lr", "0.004", "--trainer.default_root_dir", str(work),
          "--output", str(path)])
    return path


# ------------------------------------------------------------------------ the user's own LightningModule
def test_user_lightning_module_round_trip_from_python(dm, lit_original, tmp_path):
    method = GradientAscent(lit_original, lr=0.01, guard=None)  # the request's default target: forget accuracy
    unlearn(lit_original, dm, method=method)
    path = method.save_unlearned(tmp_path / "run" / "model.pt", datamodule=dm)

    assert {"pytorch-lightning_version", "state_dict", "hyper_parameters"} <= set(torch.load(path, weights_only=True))
    loaded = LitModel.load_from_checkpoint(path)
    assert type(loaded) is LitModel and loaded.hparams.hidden == 24
    unlearned = _logits(method.unlearned_model, dm)
    assert torch.equal(_logits(loaded, dm), unlearned)
    assert not torch.equal(_logits(lit_original, dm), unlearned)  # the unlearned model, not the original
    # the package's own loader, into the user's network
    assert torch.equal(_logits(load_unlearned(path, model=LitModel(hidden=24)), dm), unlearned)
    with pytest.raises(ValueError, match="does not record its architecture"):
        load_unlearned(path)  # a user's module cannot be built from the file: the error says to pass `model`

    # the audit record beside it: its hashes are those of the files and of the forget set
    audit = json.loads((path.parent / "audit.json").read_text())
    assert audit["unlearned"] == {"file": "model.pt", "sha256": _sha256(path), "bytes": path.stat().st_size}
    forget = sorted(int(i) for i in dm.forget_indices)
    assert audit["forget"]["size"] == len(forget) == int((dm.split_targets("train") == 0).sum())
    canonical = json.dumps(forget, separators=(",", ":")).encode()
    assert audit["forget"]["indices_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert audit["original"] is None  # an object in memory, no file
    assert audit["method"]["name"] == "GradientAscent" and audit["method"]["options"]["lr"] == 0.01
    assert audit["outcome"]["steps"] == method.outcome.steps > 0 and audit["outcome"]["runtime_s"] > 0
    assert audit["outcome"]["reached"] is method.outcome.reached is True and audit["outcome"]["target"] is not None
    assert set(audit["versions"]) == {"lightning-unlearn", "torch", "lightning", "torchmetrics", "python"}


# --------------------------------------------------------------------------------- the CLI's run folder
def test_cli_run_folder_loads_with_classifier_and_its_audit_matches_the_files(dm, fit_ckpt, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["unlearn", *QUIET, "--method", "GradientAscent", "--method.checkpoint", str(fit_ckpt),
            "--method.lr", "0.01", "--method.max_epochs", "1", "--method.guard", "null", *DIGITS, "--output", str(run)]
    main(args)

    model = Classifier.load_from_checkpoint(run / "model.pt")
    bare = load_classifier(run)  # the earlier loader's name, from the CLI module
    assert type(model) is Classifier and type(bare).__name__ == "LeNet5"
    assert torch.equal(_logits(model, dm), _logits(bare, dm))
    assert not torch.equal(_logits(model, dm), _logits(load_unlearned(fit_ckpt), dm))  # it was unlearned

    audit = json.loads((run / "audit.json").read_text())
    assert audit["unlearned"]["sha256"] == _sha256(run / "model.pt")
    assert audit["original"] == {"path": str(fit_ckpt), "sha256": _sha256(fit_ckpt)}
    manifest = json.loads((run / "manifest.json").read_text())
    compact = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert audit["forget"]["manifest_sha256"] == hashlib.sha256(compact).hexdigest()
    forget = json.dumps(sorted(manifest["indices"]["forget"]), separators=(",", ":")).encode()
    assert audit["forget"]["indices_sha256"] == hashlib.sha256(forget).hexdigest()
    assert audit["forget"]["size"] == len(manifest["indices"]["forget"]) > 0
    outcome = json.loads((run / "outcome.json").read_text())
    assert {k: audit["outcome"][k] for k in ("reached", "steps", "stopped_by", "runtime_s")} == {
        k: outcome[k] for k in ("reached", "steps", "stopped_by", "runtime_s")}
    assert audit["metrics"]["accuracy"] == json.loads((run / "metrics.json").read_text())["accuracy"]
    assert datetime.fromisoformat(audit["created_utc"]).utcoffset().total_seconds() == 0

    # a run folder with its audit record is still a run folder: --overwrite replaces it (and its record)
    main([*args, "--overwrite", "true", "--method.lr", "0.02"])
    again = json.loads((run / "audit.json").read_text())
    assert again["method"]["options"]["lr"] == 0.02 and again["unlearned"]["sha256"] == _sha256(run / "model.pt")

    # the run's model.pt is the unlearned classifier, not a method's Trainer checkpoint: one line says where it loads
    with pytest.raises(ValueError, match=r"is an unlearned model written by save_unlearned .* Classifier.load_from_"):
        GradientAscent.load_from_checkpoint(run / "model.pt")

    # evaluate reads the new file
    capsys.readouterr()
    main(["evaluate", *DIGITS, "--unlearned", str(run), "--original", str(fit_ckpt)])
    assert '"unlearned"' in capsys.readouterr().out


# ------------------------------------------------------------------- a method's Trainer checkpoint
@pytest.mark.parametrize("original", ["fit checkpoint", "Classifier object"])
def test_method_loads_from_its_trainer_checkpoint_without_model(original, dm, fit_ckpt, tmp_path):
    if original == "fit checkpoint":  # a copy, deleted before loading: the original file is not read again
        copy = tmp_path / "original.ckpt"
        shutil.copy(fit_ckpt, copy)
        method = GradientAscent(checkpoint=str(copy), lr=0.01, max_epochs=1, target=None, guard=None)
    else:
        method = GradientAscent(Classifier("lenet5", 10, (1, 8, 8)), lr=0.01, max_epochs=1, target=None, guard=None)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    logger = CSVLogger(tmp_path / "logs", name="run")
    make_trainer(1, [saver], enable_checkpointing=True, logger=logger).fit(method, datamodule=dm)
    if original == "fit checkpoint":
        copy.unlink()

    loaded = GradientAscent.load_from_checkpoint(saver.last_model_path)
    assert type(loaded.unlearned_model) is type(method.unlearned_model)
    assert torch.equal(_logits(loaded, dm), _logits(method, dm))
    assert loaded.hparams.checkpoint == method.hparams.checkpoint and loaded.hparams.lr == 0.01
    assert loaded.architecture == method.architecture is not None
    # the other readers take the Trainer checkpoint too
    assert torch.equal(_logits(load_unlearned(saver.last_model_path), dm), _logits(method, dm))

    # the logged hparams.yaml is plain YAML: lists, no !!python/tuple
    text = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert "!!python" not in text and yaml.safe_load(text)["val_splits"] == ["forget", "test"]


def test_method_of_a_user_module_loads_with_model_and_says_so_without(dm, lit_original, tmp_path):
    method = GradientAscent(lit_original, lr=0.01, max_epochs=1, target=None, guard=None)
    saver = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    make_trainer(1, [saver], enable_checkpointing=True).fit(method, datamodule=dm)

    with pytest.raises(ValueError, match=r"does not record the network it unlearns .*model=net\)") as err:
        GradientAscent.load_from_checkpoint(saver.last_model_path)
    assert "\n" not in str(err.value)
    loaded = GradientAscent.load_from_checkpoint(saver.last_model_path, model=LitModel(hidden=24))
    assert type(loaded.unlearned_model) is LitModel
    assert torch.equal(_logits(loaded, dm), _logits(method, dm))


def test_classifier_hparams_yaml_is_plain(dm, tmp_path):
    logger = CSVLogger(tmp_path, name="fit")
    train_classifier(dm, max_epochs=1, logger=logger, limit_train_batches=1)
    text = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert "!!python" not in text and yaml.safe_load(text)["input_shape"] == [1, 8, 8]


# --------------------------------------------------------------------------- files of the earlier format
def test_every_reader_reads_the_earlier_format_and_the_new_one(dm, fit_ckpt, tmp_path):
    original = load_unlearned(fit_ckpt)
    method = GradientAscent(checkpoint=str(fit_ckpt), lr=0.01, max_epochs=1, target=None, guard=None)
    unlearn(original, dm, method=method)
    new = method.save_unlearned(tmp_path / "new" / "model.pt")
    old = tmp_path / "old" / "model.pt"
    old.parent.mkdir()
    torch.save({"state_dict": method.unlearned_model.state_dict(), "method": "GradientAscent", "runtime_s": 1.0,
                "hparams": {"lr": 0.01}, "architecture": method.architecture}, old)
    expected = _logits(method.unlearned_model, dm)
    assert set(torch.load(new, weights_only=True)) >= {"pytorch-lightning_version", "method", "runtime_s",
                                                       "method_hparams", "architecture"}
    for path in (old, new):
        net = load_unlearned(fit_ckpt)
        load_model_weights(net, path)
        assert torch.equal(_logits(net, dm), expected)
        assert torch.equal(_logits(model_from_checkpoint(path), dm), expected)
        assert torch.equal(_logits(load_classifier(path.parent), dm), expected)
        assert torch.equal(_logits(GradientAscent(checkpoint=str(path)).unlearned_model, dm), expected)
        assert torch.equal(_logits(GradientAscent(load_unlearned(fit_ckpt), checkpoint=str(path)).unlearned_model, dm),
                           expected)
    main(["evaluate", *DIGITS, "--unlearned", str(old.parent)])  # the CLI reads the earlier run folders too
