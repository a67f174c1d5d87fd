"""The bad-input catalogue: every row of docs/bad-input.md is run here and gets the error the page gives.

The page is the table of expected errors; this file holds how each row is run. A row without a
case, or a case without a row, fails ``test_the_page_and_the_cases_are_the_same_rows``. A Python
row raises the exception type the page names, with a message that starts as the page says. A CLI
row exits with code 2 and writes exactly one line on stderr, ``lightning-unlearn <subcommand>:
error: <message>``, without a traceback and before any work (no ``--output`` is written). Every
file a row needs is made once, in a folder the rows run in, so the messages quote short relative
paths as a user would type them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_unlearn import ClassForget, IndexForget, RandomForget, SubclassForget, UnlearningDataModule, unlearn
from lightning_unlearn.cli import main
from lightning_unlearn.evaluation import evaluate
from lightning_unlearn.methods import get_method
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.models import Classifier, LeNet5

pytestmark = pytest.mark.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "bad-input.md"
ROW = re.compile(r"^\| `([a-z0-9-]+)` \| (.+) \| (exit 2|\w+): `` (.+?) `` \|$")
CLI_ERROR = re.compile(r"^lightning-unlearn (fit|unlearn|evaluate|benchmark): error: (.*)$")


def page_rows() -> dict[str, tuple[str, str]]:
    """``{case: (error, message start)}`` of every table row of the page (``error`` is ``exit 2`` or a type name)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in PAGE.read_text().splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is on the page twice"
            message = match.group(4).replace("\\|", "|")
            rows[match.group(1)] = (match.group(3), message[:-1] if message.endswith("…") else message)
    return rows


# ------------------------------------------------------------------------------ the files
class _RunsCode:
    """Unpickling this object calls ``open("marker", "w")``: a crafted checkpoint."""

    def __reduce__(self):
        return (open, ("marker", "w"))


def _manifest(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    payload = json.loads(json.dumps(_MANIFEST))
    change(payload)
    return payload


_MANIFEST: dict[str, Any] = {}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The files the rows read: checkpoints good and bad, manifests good and bad, a run folder, plain files."""
    ws = tmp_path_factory.mktemp("bad_input")
    digits = Classifier("lenet5", 10, (1, 8, 8))  # an untrained original: every row fails before it is used
    torch.save({"state_dict": digits.state_dict(), "hyper_parameters": dict(digits.hparams)}, ws / "original.ckpt")
    mnist = Classifier("lenet5", 10, (1, 28, 28))
    torch.save({"state_dict": mnist.state_dict(), "hyper_parameters": dict(mnist.hparams)}, ws / "mnist.ckpt")
    torch.save(digits.model.state_dict(), ws / "weights.pt")  # a bare state dict: no architecture recorded
    torch.save({"state_dict": _RunsCode()}, ws / "evil.pt")
    (ws / "inputs").mkdir()
    shutil.copy(ws / "original.ckpt", ws / "inputs" / "original.ckpt")
    shutil.copy(ws / "original.ckpt", ws / "unlearned.pt")
    (ws / "empty.pt").write_bytes(b"")
    (ws / "notes.pt").write_text("weights: [1, 2]\n")
    np.save(ws / "array.npy", np.arange(4.0))
    (ws / "notes.txt").write_text("mine")
    (ws / "data").mkdir()
    (ws / "data" / "table.csv").write_text("1,2\n")
    (ws / "run").mkdir()
    for name in ("model.pt", "manifest.json", "config.yaml"):
        (ws / "run" / name).write_text("")
    dm = UnlearningDataModule("digits", forget=ClassForget(3))
    _MANIFEST.update(dm.manifest_dict())
    first_forget = _MANIFEST["indices"]["forget"][0]
    manifests = {
        "manifest.json": _manifest(lambda m: None),
        "negative.json": _manifest(lambda m: m["indices"]["forget"].__setitem__(0, -1)),
        "overlap.json": _manifest(lambda m: m["indices"]["retain"].append(first_forget)),
        "duplicate.json": _manifest(lambda m: m["indices"]["forget"].append(first_forget)),
        "missing.json": _manifest(lambda m: m["indices"]["retain"].pop(0)),
        "float.json": _manifest(lambda m: m["indices"]["forget"].__setitem__(0, 1.5)),
        "heldout.json": _manifest(lambda m: m["indices"].__setitem__("new", m["indices"]["train"][:7])),
        "noindices.json": _manifest(lambda m: m.pop("indices")),
        "spec.json": _manifest(lambda m: m.__setitem__("forget_spec", {"type": "Everything"})),
        "mnist.json": _manifest(lambda m: m.__setitem__("dataset", "mnist5k")),
    }
    for name, payload in manifests.items():
        (ws / name).write_text(json.dumps(payload))
    (ws / "text.json").write_text("forget: [1, 2]\n")
    return ws


@pytest.fixture(autouse=True)
def _in_workspace(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------ the cases
def _lenet(input_size: int = 8, classes: int = 10) -> LeNet5:
    return LeNet5(classes, 1, input_size)


def _digits(**options: Any) -> UnlearningDataModule:
    options.setdefault("forget", ClassForget(3))
    return UnlearningDataModule("digits", **options)


def _method(name: str, **options: Any) -> Callable[[], Any]:
    return lambda: get_method(name)(_lenet(), **options)


def _nan_inputs() -> None:
    x, y = torch.randn(200, 1, 8, 8), torch.arange(200) % 10
    x[3] = float("nan")  # a class-3 sample: in the forget set of ClassForget(3)
    dm = UnlearningDataModule.from_datasets(TensorDataset(x, y), TensorDataset(torch.randn(50, 1, 8, 8), torch.arange(50) % 10),
                                            ClassForget(3), batch_size=16)
    unlearn(_lenet(), dm, "GradientAscent", target=None, guard=None, max_epochs=1)


def _fit_on_bare_loader(method: UnlearningMethod) -> None:
    """Fit ``method`` on a bare DataLoader: the Trainer has no data module."""
    loader = DataLoader(TensorDataset(torch.randn(8, 1, 8, 8), torch.arange(8) % 10), batch_size=4)
    Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(method, loader)


DATA = ["--data.dataset", "digits", "--data.forget", "ClassForget", "--data.forget.classes", "3"]
UNLEARN = ["unlearn", "--method", "FineTune", "--method.checkpoint", "original.ckpt", *DATA, "--output", "out"]
EVALUATE = ["evaluate", *DATA, "--unlearned", "unlearned.pt"]


def _unlearn(*args: str, checkpoint: str = "original.ckpt", method: str = "FineTune") -> list[str]:
    return ["unlearn", "--method", method, "--method.checkpoint", checkpoint, *DATA, "--output", "out", *args]


CASES: dict[str, Callable[[], Any] | list[str]] = {
    # checkpoints and files
    "ckpt-crafted": lambda: get_method("FineTune")(checkpoint="evil.pt"),
    "cli-ckpt-crafted": _unlearn(checkpoint="evil.pt"),
    "cli-ckpt-empty": _unlearn(checkpoint="empty.pt"),
    "cli-ckpt-text": _unlearn(checkpoint="notes.pt"),
    "cli-ckpt-npy": _unlearn(checkpoint="array.npy"),
    "cli-ckpt-directory": _unlearn(checkpoint="data"),
    "cli-ckpt-missing": _unlearn(checkpoint="original.ckpy"),
    "ckpt-empty": lambda: get_method("FineTune")(checkpoint="empty.pt"),
    "ckpt-directory": lambda: get_method("FineTune")(checkpoint="data"),
    "ckpt-other-architecture": lambda: get_method("FineTune")(_lenet(classes=4), checkpoint="original.ckpt"),
    "cli-ckpt-no-architecture": _unlearn(checkpoint="weights.pt"),
    "cli-no-checkpoint": ["unlearn", "--method", "FineTune", *DATA, "--output", "out"],
    "cli-recording-empty": _unlearn("--method.recording", "empty.pt", method="NaivePS"),
    "cli-evaluate-folder-without-model": ["evaluate", *DATA, "--unlearned", "data"],
    "cli-evaluate-no-unlearned": ["evaluate", *DATA],
    "cli-evaluate-original-empty": [*EVALUATE, "--original", "empty.pt"],
    # outputs
    "cli-output-is-checkpoint": _unlearn("--output", "inputs/original.ckpt", "--overwrite", "true",
                                         checkpoint="inputs/original.ckpt"),
    "cli-output-holds-checkpoint": _unlearn("--output", "inputs", "--overwrite", "true", checkpoint="inputs/original.ckpt"),
    "cli-output-is-manifest": _unlearn("--data.manifest", "manifest.json", "--output", "manifest.json", "--overwrite", "true"),
    "cli-output-is-file": _unlearn("--output", "notes.txt", "--overwrite", "true"),
    "cli-output-folder-of-other-files": _unlearn("--output", "data", "--overwrite", "true"),
    "cli-output-exists": _unlearn("--output", "run"),
    "cli-evaluate-output-is-input": [*EVALUATE, "--output", "unlearned.pt"],
    "cli-evaluate-output-is-folder": [*EVALUATE, "--output", "data"],
    "cli-evaluate-output-other-file": [*EVALUATE, "--output", "notes.txt"],
    "cli-fit-output-is-folder": ["fit", "--model.model", "lenet5", *DATA, "--output", "data"],
    "cli-benchmark-output-is-file": ["benchmark", "--output", "notes.txt"],
    # manifests
    "cli-manifest-typo": _unlearn("--data.manifest", "manifest.jsn"),
    "cli-evaluate-manifest-typo": [*EVALUATE, "--data.manifest", "manifest.jsn"],
    "manifest-typo": lambda: _digits(manifest="manifest.jsn").setup(),
    "cli-manifest-negative-index": _unlearn("--data.manifest", "negative.json"),
    "manifest-negative-index": lambda: _digits(manifest="negative.json").setup(),
    "cli-manifest-forget-in-retain": _unlearn("--data.manifest", "overlap.json"),
    "manifest-duplicated-index": lambda: _digits(manifest="duplicate.json").setup(),
    "manifest-sample-missing": lambda: _digits(manifest="missing.json").setup(),
    "manifest-float-index": lambda: _digits(manifest="float.json").setup(),
    "manifest-held-out-in-train": lambda: _digits(manifest="heldout.json").setup(),
    "cli-manifest-not-json": _unlearn("--data.manifest", "text.json"),
    "manifest-no-indices": lambda: _digits(manifest="noindices.json").setup(),
    "manifest-other-dataset": lambda: _digits(manifest="mnist.json").setup(),
    "manifest-unknown-spec": lambda: _digits(manifest="spec.json").setup(),
    # forget specifications
    "index-forget-floats": lambda: IndexForget([5.7, 9.2]),
    "index-forget-strings": lambda: IndexForget(["5", "9"]),
    "index-forget-bool": lambda: IndexForget([True]),
    "index-forget-empty": lambda: IndexForget([]),
    "index-forget-duplicates": lambda: IndexForget([4, 8, 4]),
    "cli-index-forget-duplicates": _unlearn("--data.forget", "IndexForget", "--data.forget.indices", "[4, 8, 4]"),
    "index-forget-out-of-range": lambda: _digits(forget=IndexForget(list(range(1400, 1797)))).setup(),
    "index-forget-whole-split": lambda: _digits(forget=IndexForget(list(range(1438))), ref_fraction=0.0).setup(),
    "subclass-forget-float-class": lambda: SubclassForget(class_id=3.7),
    "subclass-forget-fraction": lambda: SubclassForget(3, fraction=1.5),
    "class-forget-float": lambda: ClassForget(3.0),
    "class-forget-empty": lambda: ClassForget([]),
    "cli-class-forget-float": _unlearn("--data.forget.classes", "3.5"),
    "cli-class-forget-out-of-range": _unlearn("--data.forget.classes", "10"),
    "class-forget-every-class": lambda: _digits(forget=ClassForget(list(range(10)))).setup(),
    "random-forget-count-and-fraction": lambda: RandomForget(count=3, fraction=0.1),
    "cli-forget-unknown": _unlearn("--data.forget", "Everything"),
    "forget-not-a-spec": lambda: _digits(forget=3),
    # method options
    "cli-no-method": ["unlearn", "--method.checkpoint", "original.ckpt", *DATA, "--output", "out"],
    "cli-unknown-method": _unlearn(method="Foo"),
    "unknown-method": lambda: unlearn(_lenet(), _digits(), "Foo"),
    "base-class": lambda: UnlearningMethod(_lenet()),
    "model-not-a-module": lambda: get_method("FineTune")("lenet5"),
    "cli-unknown-option": _unlearn("--method.lrr", "0.1"),
    "max-epochs-zero": _method("FineTune", max_epochs=0, target=None),
    "cli-max-epochs-zero": _unlearn("--method.max_epochs", "0", "--method.target", "null"),
    "cli-trainer-max-epochs-zero": _unlearn("--trainer.max_epochs", "0"),
    "val-splits-unknown": _method("FineTune", val_splits=("forget", "tset")),
    "cli-val-splits-unknown": _unlearn("--method.val_splits", "[forget, tset]"),
    "salun-threshold-selects-nothing": _method("SalUn", threshold=1e-12),
    "delta-loss-threshold-nan": _method("DeltaTargeted", loss_threshold=float("nan")),
    "delta-lam-inf": _method("DeltaTargeted", lam=float("inf")),
    "boundary-shrink-epsilon-inf": _method("BoundaryShrink", epsilon=float("inf")),
    "naive-ps-ridge-nan": _method("NaivePS", ridge=float("nan")),
    "pru-head-lr-nan": _method("PRU", head_lr=float("nan")),
    "scrub-temperature-inf": _method("SCRUB", temperature=float("inf")),
    "ps-top-k-float": _method("PS", top_k=1.5),
    "lr-nan": _method("FineTune", lr=float("nan")),
    "cli-lr-nan": _unlearn("--method.lr", "nan"),
    "cli-lr-negative": _unlearn("--method.lr", "-1"),
    "weight-decay-negative": _method("FineTune", weight_decay=-1),
    "cli-weight-decay-negative": _unlearn("--method.weight_decay", "-1"),
    "momentum-above-one": _method("FineTune", optimizer="sgd", momentum=2.0),
    "optimizer-unknown": _method("FineTune", optimizer="adagrad"),
    "cli-optimizer-unknown": _unlearn("--method.optimizer", "adagrad"),
    "optimizer-not-callable": _method("FineTune", optimizer=3),
    "optimizer-not-an-optimizer": _method("FineTune", optimizer=torch.optim.lr_scheduler.StepLR),
    "lr-scheduler-not-callable": _method("FineTune", lr_scheduler="steplr"),
    "seed-negative": _method("FineTune", seed=-1),
    "freeze-batchnorm-word": _method("SU", freeze_batchnorm="yes"),
    "freeze-batchnorm-retrain": _method("Retrain", freeze_batchnorm=True),
    "head-unknown": _method("FineTune", head="classifier"),
    "cli-benchmark-unknown-method": ["benchmark", "--methods", "[Foo]", "--output", "out"],
    # request options
    "target-above-one": _method("FineTune", target=1.5),
    "target-word": _method("FineTune", target="high"),
    "cli-target-above-one": _unlearn("--method.target", "2"),
    "guard-nan": _method("FineTune", guard=float("nan")),
    "cli-guard-nan": _unlearn("--method.guard", "nan"),
    "strict-without-target": _method("FineTune", strict=True, target=None),
    "strict-closed-form": _method("NaivePS", strict=True),
    "max-steps-zero": _method("FineTune", max_steps=0),
    "min-steps-negative": _method("FineTune", min_steps=-1),
    "check-every-zero": _method("FineTune", check_every=0),
    # data
    "dataset-unknown": lambda: UnlearningDataModule("digitz").setup(),
    "cli-dataset-unknown": _unlearn("--data.dataset", "digitz"),
    "cli-batch-size-zero": _unlearn("--data.batch_size", "0"),
    "batch-size-float": lambda: _digits(batch_size=1.5),
    "new-fraction-above-one": lambda: _digits(new_fraction=1.5),
    "ref-fraction-nan": lambda: _digits(ref_fraction=float("nan")),
    "num-workers-negative": lambda: _digits(num_workers=-1),
    "data-seed-negative": lambda: _digits(seed=-1),
    "cli-dataset-without-root": _unlearn("--data.dataset", "mnist"),
    "nan-inputs": _nan_inputs,
    "fit-without-datamodule": lambda: _fit_on_bare_loader(get_method("SU")(_lenet(), target=None, guard=None)),
    "fit-without-datamodule-request": lambda: _fit_on_bare_loader(get_method("FineTune")(_lenet())),
    # model/data mismatch
    "model-other-inputs": lambda: unlearn(_lenet(28), _digits(), "FineTune"),
    "model-fewer-logits": lambda: unlearn(_lenet(classes=8), _digits(), "FineTune", num_classes=8),
    "model-other-label-space": _method("FineTune", num_classes=12),
    "cli-checkpoint-other-inputs": _unlearn(checkpoint="mnist.ckpt"),
    "cli-evaluate-other-inputs": ["evaluate", *DATA, "--unlearned", "mnist.ckpt"],
    "evaluate-other-inputs": lambda: evaluate(_lenet(28), _digits()),
}


def test_the_page_and_the_cases_are_the_same_rows():
    rows = page_rows()
    assert not set(CASES) - set(rows), f"cases without a row on {PAGE.name}: {sorted(set(CASES) - set(rows))}"
    assert not set(rows) - set(CASES), f"rows of {PAGE.name} without a case: {sorted(set(rows) - set(CASES))}"
    for case, (error, _) in rows.items():
        assert (error == "exit 2") == isinstance(CASES[case], list), f"{case}: CLI rows exit 2, Python rows raise"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, capsys):
    error, message = page_rows()[case]
    run = CASES[case]
    if isinstance(run, list):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(run)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        line = CLI_ERROR.match(lines[0])
        assert line is not None, lines[0]
        assert line.group(2).startswith(message), f"\n got: {line.group(2)}\npage: {message}"
        assert not Path("out").exists()  # refused before any work
    else:
        with pytest.raises(Exception) as info:
            run()
        assert type(info.value).__name__ == error, f"{type(info.value).__name__}: {info.value}"
        assert str(info.value).startswith(message), f"\n got: {info.value}\npage: {message}"
    assert not Path("marker").exists()  # nothing ran from the crafted checkpoint


def test_a_real_process_writes_one_line_and_exits_2(workspace):
    """The console script as a user runs it: stderr is the one error line, nothing else, and the input is intact."""
    digest = (workspace / "unlearned.pt").read_bytes()
    args = [*EVALUATE, "--output", "unlearned.pt"]
    done = subprocess.run([sys.executable, "-m", "lightning_unlearn.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=workspace, env={"PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
                                                          "PATH": "", "PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and CLI_ERROR.match(lines[0]), done.stderr
    assert (workspace / "unlearned.pt").read_bytes() == digest
