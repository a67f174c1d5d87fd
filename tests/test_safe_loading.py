"""No code runs from a loaded file: every load path, in Python and on the command line.

A crafted pickle whose ``__reduce__`` creates a marker file is passed to every loader; the
marker must never appear and the error must say the file is not trusted. Files that are not
checkpoints at all get their own clear error, and every file the package writes still loads.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier
from lightning_unlearn.callbacks import PrototypeRecorder
from lightning_unlearn.callbacks.prototype_recorder import PrototypeRecording
from lightning_unlearn.cli import load_classifier, main
from lightning_unlearn.methods import get_method, load_model_weights
from lightning_unlearn.checkpoints import model_from_checkpoint
from lightning_unlearn.models import Classifier, LeNet5
from lightning_unlearn.serialization import load_trusted, plain

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "configs"
DIGITS = ["--data", str(CONFIGS / "data.yaml"), "--data.dataset", "digits"]
UNTRUSTED = "is not a trusted checkpoint: it contains objects that would run code on load"
NOT_A_CHECKPOINT = "is not a PyTorch checkpoint"


class _WritesMarker:
    """Unpickling this object calls ``open(marker, "w")``: the file appears iff code ran on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _craft(path: Path, marker: Path, fmt: str = "zip") -> Path:
    """A checkpoint-shaped file whose state dict runs code when unpickled."""
    payload = {"state_dict": _WritesMarker(marker), "hyper_parameters": {"model": "lenet5"}}
    if fmt == "zip":
        torch.save(payload, path)
    elif fmt == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle, not written by torch.save at all
        path.write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    return path


ONE_THREAD = True  # read by conftest's thread fixture


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory) -> Path:
    """`lightning-unlearn fit --output` on digits with the PrototypeRecorder attached (one epoch)."""
    workdir = tmp_path_factory.mktemp("safe_fit")
    path = workdir / "original.ckpt"
    main(["fit", "--config", str(CONFIGS / "fit.yaml"), "--data.dataset", "digits", "--trainer.max_epochs", "1",
          "--trainer.default_root_dir", str(workdir), "--output", str(path)])
    return path


def test_the_crafted_file_runs_code_when_unpickled(tmp_path):
    """The fixture is a real attack: an unrestricted load creates the marker."""
    marker = tmp_path / "marker"
    crafted = _craft(tmp_path / "evil.pt", marker)
    torch.load(crafted, weights_only=False)
    assert marker.exists()


# ----------------------------------------------------------------------- Python loaders
def _lenet() -> LeNet5:
    return LeNet5(10, 1, 8)


def _run_folder(crafted: Path) -> Path:
    folder = crafted.parent / "run"
    folder.mkdir()
    crafted.rename(folder / "model.pt")
    return folder


PYTHON_LOADERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "load_trusted": ("checkpoint", lambda p: load_trusted(p, "checkpoint")),
    "load_classifier": ("path", lambda p: load_classifier(p)),
    "load_classifier(model)": ("path", lambda p: load_classifier(p, _lenet())),
    "load_classifier(run folder)": ("path", lambda p: load_classifier(_run_folder(p))),
    "load_model_weights": ("checkpoint", lambda p: load_model_weights(_lenet(), p)),
    "model_from_checkpoint": ("checkpoint", lambda p: model_from_checkpoint(p)),
    "PrototypeRecording.load": ("recording", lambda p: PrototypeRecording.load(p)),
    "NaivePS(recording=path)": ("recording", lambda p: get_method("NaivePS")(model=_lenet(), recording=str(p))),
    "Method(checkpoint=path)": ("checkpoint", lambda p: get_method("FineTune")(checkpoint=str(p))),
    "Method(model, checkpoint=path)": ("checkpoint", lambda p: get_method("SU")(model=_lenet(), checkpoint=str(p))),
    "Method.load_unlearned": ("path", lambda p: get_method("FineTune")(model=_lenet()).load_unlearned(p)),
}


@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle"])
@pytest.mark.parametrize("loader", list(PYTHON_LOADERS))
def test_python_loaders_refuse_a_crafted_file(loader, fmt, tmp_path):
    marker = tmp_path / "marker"
    crafted = _craft(tmp_path / "evil.pt", marker, fmt)
    argument, load = PYTHON_LOADERS[loader]
    with pytest.raises(ValueError, match=f"^`{argument}` '[^']*\\.pt' {UNTRUSTED} \\(io.open\\); nothing was executed"):
        load(crafted)
    assert not marker.exists()


# ------------------------------------------------------------------------- CLI loaders
def _cli_rows(crafted: str, ckpt: str, out: str) -> dict[str, tuple[str, list[str]]]:
    unlearn = ["unlearn", "--method", "FineTune", *DIGITS, "--output", out]
    naive = ["unlearn", "--method", "NaivePS", "--method.checkpoint", ckpt, *DIGITS, "--output", out]
    lenet = ["--method.model", "lightning_unlearn.models.LeNet5", "--method.model.input_size", "8"]
    evaluate = ["evaluate", *DIGITS]
    return {
        "unlearn --method.checkpoint": ("--method.checkpoint", [*unlearn, "--method.checkpoint", crafted]),
        "unlearn --method.checkpoint --method.model": ("--method.checkpoint", [*unlearn, "--method.checkpoint", crafted, *lenet]),
        "unlearn --method.recording": ("--method.recording", [*naive, "--method.recording", crafted]),
        "evaluate --unlearned": ("--unlearned", [*evaluate, "--unlearned", crafted]),
        "evaluate --unlearned --model": ("--unlearned", [*evaluate, "--unlearned", crafted, "--model",
                                                         "lightning_unlearn.models.LeNet5", "--model.input_size", "8"]),
        "evaluate --original": ("--original", [*evaluate, "--unlearned", ckpt, "--original", crafted]),
        "evaluate --reference": ("--reference", [*evaluate, "--unlearned", ckpt, "--reference", crafted]),
    }


CLI_ROWS = list(_cli_rows("", "", ""))


@pytest.mark.parametrize("row", CLI_ROWS)
def test_cli_refuses_a_crafted_file(row, original_ckpt, tmp_path, capsys):
    marker = tmp_path / "marker"
    crafted = _craft(tmp_path / "evil.pt", marker)
    argument, args = _cli_rows(str(crafted), str(original_ckpt), str(tmp_path / "out"))[row]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"`{argument}` '{crafted}' {UNTRUSTED} (io.open); nothing was executed" in err
    assert "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_console_script_refuses_a_crafted_file_in_one_line(original_ckpt, tmp_path):
    """A real process: exit code 2, the one-line error, no traceback."""
    marker = tmp_path / "marker"
    crafted = _craft(tmp_path / "evil.pt", marker)
    done = subprocess.run(
        [sys.executable, "-m", "lightning_unlearn.cli", "evaluate", *DIGITS, "--unlearned", str(original_ckpt),
         "--original", str(crafted)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert f"`--original` '{crafted}' {UNTRUSTED}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


# -------------------------------------------------------------------- not a checkpoint
BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty": (lambda d: (d / "empty.pt", (d / "empty.pt").write_bytes(b""))[0], f"{NOT_A_CHECKPOINT} \\(the file is empty\\)"),
    "text": (lambda d: (d / "notes.pt", (d / "notes.pt").write_text("weights: [1, 2]\n"))[0], NOT_A_CHECKPOINT),
    "npy": (lambda d: (d / "array.npy", np.save(d / "array.npy", np.arange(4.0)))[0],
            f"{NOT_A_CHECKPOINT} \\(it is a NumPy .npy file\\)"),
    "directory": (lambda d: (d / "folder", (d / "folder").mkdir())[0], "is a directory"),
    "missing": (lambda d: d / "missing.pt", "does not exist"),
}
ERRORS = {"directory": IsADirectoryError, "missing": FileNotFoundError}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_files_that_are_not_checkpoints_get_a_clear_error(kind, tmp_path):
    make, message = BAD_FILES[kind]
    path = make(tmp_path)
    for argument, load in (("checkpoint", lambda p: load_model_weights(_lenet(), p)),
                           ("recording", PrototypeRecording.load),
                           ("checkpoint", lambda p: get_method("FineTune")(checkpoint=str(p)))):
        with pytest.raises(ERRORS.get(kind, ValueError), match=f"^`{argument}` '{path}' {message}"):
            load(path)


@pytest.mark.parametrize("kind", ["empty", "npy", "directory"])
def test_cli_says_what_is_wrong_with_a_bad_file(kind, original_ckpt, tmp_path, capsys):
    make, message = BAD_FILES[kind]
    path = make(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["unlearn", "--method", "FineTune", "--method.checkpoint", str(path), *DIGITS, "--output", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Ran out of input" not in err and "underflow" not in err
    assert message.replace("\\", "") in err and str(path) in err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", *DIGITS, "--unlearned", str(original_ckpt), "--reference", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    expected = "is a directory without model.pt" if kind == "directory" else message.replace("\\", "")
    assert f"`--reference` '{path}' {expected}" in err and "Traceback" not in err


# --------------------------------------------------------------- what the package writes
def test_every_file_the_package_writes_still_loads(original_ckpt, tmp_path):
    assert isinstance(load_trusted(original_ckpt, "checkpoint"), dict)
    assert type(load_classifier(original_ckpt)).__name__ == "LeNet5"
    assert PrototypeRecording.load(original_ckpt).num_classes == 10

    run = tmp_path / "run"
    main(["unlearn", "--method", "FineTune", "--method.checkpoint", str(original_ckpt), "--method.max_epochs", "1",
          "--trainer.enable_progress_bar", "false", *DIGITS, "--output", str(run)])
    assert load_trusted(run / "model.pt", "checkpoint")["method"] == "FineTune"
    assert type(load_classifier(run)).__name__ == "LeNet5"

    dm = UnlearningDataModule("digits", forget=ClassForget(0))
    recorder = PrototypeRecorder()
    classifier = train_classifier(dm, max_epochs=1, callbacks=[recorder], enable_progress_bar=False,
                                  enable_model_summary=False, logger=False, enable_checkpointing=False)
    exported = PrototypeRecording.load(recorder.export(tmp_path / "recording.pt"))
    assert torch.equal(exported.gram, recorder.recording.gram)

    # A Path given as `checkpoint` is written as a string, in model.pt and in Lightning checkpoints.
    torch.save(classifier.state_dict(), tmp_path / "weights.pt")
    method = get_method("FineTune")(model=Classifier("lenet5", 10, (1, 8, 8)), checkpoint=tmp_path / "weights.pt")
    saved = load_trusted(method.save_unlearned(tmp_path / "unlearned.pt"), "checkpoint")
    assert saved["method_hparams"]["checkpoint"] == str(tmp_path / "weights.pt")
    checkpoint: dict = {"hyper_parameters": dict(method.hparams)}
    method.on_save_checkpoint(checkpoint)
    assert checkpoint["hyper_parameters"]["checkpoint"] == str(tmp_path / "weights.pt")


def test_plain_keeps_containers_and_turns_objects_into_plain_types():
    from enum import Enum

    class Colour(Enum):
        RED = "red"

    value = {"path": Path("a/b.pt"), "enum": Colour.RED, "np": np.float64(0.5), "tuple": (1, Path("c")),
             "tensor": torch.ones(1), "other": object}
    out = plain(value)
    assert out["path"] == "a/b.pt" and out["enum"] == "red" and out["np"] == 0.5 and type(out["np"]) is float
    assert out["tuple"] == (1, "c") and torch.equal(out["tensor"], torch.ones(1)) and isinstance(out["other"], str)


def test_atomic_writes_leave_the_old_file_or_the_new_one_never_a_part(tmp_path):
    """The one atomic-write helper: a failing write leaves the previous file and no temporary behind."""
    from lightning_unlearn.atomic import atomic_path, save_atomic, write_json_atomic

    path = tmp_path / "record.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text('{"a": 2, "half')
            raise RuntimeError("disk full")
    assert path.read_text() == '{\n "a": 1\n}' and [p.name for p in tmp_path.iterdir()] == ["record.json"]
    save_atomic({"w": torch.ones(2)}, tmp_path / "model.pt")
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["w"], torch.ones(2))
