"""The ``lightning-unlearn`` CLI: fit → unlearn (every method's YAML) → evaluate, and its error paths.

Runs in-process through ``main(args)`` on sklearn digits with short budgets; multi-process runs are
in tests/test_distributed.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from lightning_unlearn.cli import load_classifier, main, resolve_method_args
from lightning_unlearn.methods import available_methods, get_method
from lightning_unlearn.models import Classifier

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "configs"
DIGITS = ["--data", str(CONFIGS / "data.yaml"), "--data.dataset", "digits"]


ONE_THREAD = True  # read by conftest's thread fixture


def _config_file(method: str) -> Path:
    from lightning_unlearn.methods.registry import METHODS

    key = next(k for k, cls in METHODS.items() if cls is get_method(method))
    return CONFIGS / f"{key}.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def original_ckpt(workdir) -> Path:
    """`lightning-unlearn fit --config examples/configs/fit.yaml` on digits (PrototypeRecorder attached)."""
    path = workdir / "original.ckpt"
    main(["fit", "--config", str(CONFIGS / "fit.yaml"), "--data.dataset", "digits", "--trainer.max_epochs", "8",
          "--model.lr", "0.004", "--trainer.default_root_dir", str(workdir), "--output", str(path)])
    return path


def _unlearn(args: list[str]) -> None:
    main(["unlearn", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *args])


def test_fit_writes_a_classifier_checkpoint_with_its_architecture(original_ckpt):
    payload = torch.load(original_ckpt, map_location="cpu", weights_only=False)
    assert payload["hyper_parameters"]["model"] == "lenet5"
    assert list(payload["hyper_parameters"]["input_shape"]) == [1, 8, 8]  # linked from the data module
    model = load_classifier(original_ckpt)
    assert type(model).__name__ == "LeNet5"
    assert any("PrototypeRecorder" in key for key in payload.get("callbacks", {}))


def test_every_example_yaml_holds_its_method_s_current_defaults():
    """The YAMLs say "Values below are the method's defaults": a changed default or a new option shows here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_configs", CONFIGS / "generate.py")
    generate = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(generate)  # type: ignore[union-attr]
    stale = [m for m in available_methods() if _config_file(m).read_text() != generate.method_config(m)]
    assert not stale, f"stale example configs for {stale}: run `python examples/configs/generate.py`"


@pytest.mark.parametrize("method", available_methods())
def test_every_method_has_a_yaml_that_runs(method, original_ckpt, workdir):
    config = _config_file(method)
    assert config.is_file(), f"no example config for {method}: run `python examples/configs/generate.py`"
    init_args = yaml.safe_load(config.read_text())["method"]["init_args"]
    out = workdir / f"run_{config.stem}"
    # A shortened fixed budget, no request (its guard may hand back the original weights, which `changed` rejects;
    # the request through the CLI is tested in tests/test_request.py).
    args = ["--config", str(config), "--method.checkpoint", str(original_ckpt), "--data.dataset", "digits",
            "--output", str(out), "--method.target", "null", "--method.guard", "null"]
    if "recording" in init_args:
        args += ["--method.recording", str(original_ckpt)]
    if init_args.get("max_epochs", 0) > 1:  # shortened
        args += ["--method.max_epochs", "1"]
    _unlearn(args)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.pt", "config.yaml", "manifest.json", "metrics.json", "audit.json"]
        + (["targets.pt"] if (out / "targets.pt").exists() else [])
    )
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    assert saved["method"] == get_method(method).method_name
    unlearned, original = load_classifier(out), load_classifier(original_ckpt)
    changed = [n for n, p in unlearned.state_dict().items() if not torch.equal(p, original.state_dict()[n])]
    assert changed, f"{method} left every weight unchanged"
    # the saved config reproduces the run's arguments
    assert yaml.safe_load((out / "config.yaml").read_text())["method"]["class_path"].endswith(get_method(method).__name__)


def test_unlearn_evaluate_and_reference_gap(original_ckpt, workdir):
    ft, retrain = workdir / "ft", workdir / "retrain"
    _unlearn(["--method", "fine-tune", "--method.checkpoint", str(original_ckpt), "--method.max_epochs", "1", *DIGITS,
              "--output", str(ft), "--evaluate", "true"])
    # The reference retrains for its budget, no request (re-initialised weights already meet a class-wise target).
    _unlearn(["--method=retrain", "--method.checkpoint", str(original_ckpt), "--method.max_epochs", "2",
              "--method.lr", "0.004", "--method.target", "null", "--method.guard", "null", *DIGITS, "--output", str(retrain)])
    import json

    metrics = json.loads((ft / "metrics.json").read_text())
    assert metrics["method"] == "FineTune" and metrics["runtime_s"] > 0
    assert json.loads((ft / "report.json").read_text())["acc_forget"] == pytest.approx(metrics["accuracy"]["forget"])
    report_file = workdir / "ft_eval.json"
    main(["evaluate", *DIGITS, "--unlearned", str(ft), "--original", str(original_ckpt), "--reference", str(retrain),
          "--output", str(report_file)])
    report = json.loads(report_file.read_text())
    assert report["acc_forget"] == pytest.approx(metrics["accuracy"]["forget"])
    assert 0.0 <= report["average_gap"] <= 1.0
    assert report["acc_retain"] > 0.5  # fine-tuning on D_r keeps the retained classes


def test_print_config_shows_the_method_and_its_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["unlearn", "--method", "finetune", "--method.lr", "0.5", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method"]["class_path"] == "lightning_unlearn.methods.fine_tune.FineTune"
    assert printed["method"]["init_args"]["lr"] == 0.5


def test_unknown_method_lists_the_registered_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["unlearn", "--method", "forget-everything", "--method.checkpoint", "x.ckpt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Unknown unlearning method 'forget-everything'" in err
    assert all(name in err for name in available_methods())
    with pytest.raises(ValueError, match="Registered methods: "):
        resolve_method_args(["--method=nope"])


def test_yaml_typo_surfaces_jsonargparse_error(tmp_path, original_ckpt, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({"method": {"class_path": "FineTune", "init_args": {"checkpoint": str(original_ckpt), "lrr": 0.1}}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["unlearn", "--config", str(config), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "lrr" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_and_other_architecture_are_clear_errors(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        _unlearn(["--method", "FineTune", "--method.checkpoint", str(tmp_path / "nope.ckpt"), *DIGITS, "--output", str(out)])
    err = capsys.readouterr().err
    assert "`--method.checkpoint`" in err and "does not exist" in err
    other = tmp_path / "allcnn.ckpt"
    clf = Classifier("allcnn", 10, (1, 8, 8))
    torch.save({"state_dict": clf.state_dict(), "hyper_parameters": dict(clf.hparams)}, other)
    with pytest.raises(SystemExit):
        _unlearn(["--method", "FineTune", "--method.checkpoint", str(other), "--method.model", "lightning_unlearn.models.LeNet5",
                  "--method.model.input_size", "8", *DIGITS, "--output", str(out)])
    assert "is of another architecture" in capsys.readouterr().err
    torch.save(clf.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(SystemExit):
        _unlearn(["--method", "FineTune", "--method.checkpoint", str(tmp_path / "bare.pt"), *DIGITS, "--output", str(out)])
    assert "does not record its architecture" in capsys.readouterr().err
    assert not out.exists()


def test_output_is_never_half_written(original_ckpt, tmp_path, monkeypatch, capsys):
    import lightning_unlearn.cli.runs as runs

    out = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runs, "split_accuracies", broken)  # fails after model.pt was written to the temp folder
    with pytest.raises(RuntimeError, match="disk full"):
        _unlearn(["--method", "GradientAscent", "--method.checkpoint", str(original_ckpt), "--method.max_epochs", "1",
                  *DIGITS, "--output", str(out)])
    assert list(tmp_path.iterdir()) == []  # neither the run folder nor a temporary folder is left
    monkeypatch.undo()
    out.mkdir()
    with pytest.raises(SystemExit):
        _unlearn(["--method", "GradientAscent", "--method.checkpoint", str(original_ckpt), *DIGITS, "--output", str(out)])
    assert "exists; pass `--overwrite true`" in capsys.readouterr().err


def test_an_overwrite_never_destroys_an_input_a_file_or_a_folder_that_is_not_a_run(original_ckpt, tmp_path, capsys):
    import hashlib

    from lightning_unlearn.benchmark_store import output_lock

    ckpt = tmp_path / "inputs" / "original.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(original_ckpt.read_bytes())
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "data.csv").write_text("1,2")
    base = ["--method", "GradientAscent", "--method.checkpoint", str(ckpt), "--method.max_steps", "1", *DIGITS, "--overwrite", "true"]
    for output, message in [
        (ckpt, "is or holds the input `--method.checkpoint`"),
        (ckpt.parent, "is or holds the input `--method.checkpoint`"),
        (tmp_path / "notes.txt", "is an existing file, not a run folder"),
        (tmp_path / "folder", "is a folder that holds other files, not a run folder"),
    ]:
        with pytest.raises(SystemExit):
            _unlearn([*base, "--output", str(output)])
        assert message in capsys.readouterr().err
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest  # every input and file is intact
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "folder" / "data.csv").read_text() == "1,2"

    run = tmp_path / "run"
    _unlearn([*base, "--output", str(run)])
    first = (run / "model.pt").stat().st_mtime_ns
    _unlearn([*base, "--output", str(run)])  # an earlier run folder is what an overwrite replaces
    assert (run / "model.pt").stat().st_mtime_ns != first
    with output_lock(run):  # another run is writing there: fail before training, leave it alone
        with pytest.raises(SystemExit):
            _unlearn([*base, "--output", str(run)])
        assert "error: Another run is writing `--output`" in capsys.readouterr().err


def test_publishing_over_an_earlier_run_swaps_it_in_one_step(tmp_path, monkeypatch):
    """Where the OS can swap two folders atomically, `--output` is at every instant the old run or the
    new one (a kill between two renames left neither); elsewhere the two renames remain."""
    import lightning_unlearn.atomic as store

    def staged(content: str) -> Path:
        tmp = Path(tempfile.mkdtemp(dir=tmp_path, prefix=".run."))
        (tmp / "model.pt").write_text(content)
        return tmp

    out = tmp_path / "run"
    store.publish_dir(staged("first"), out, overwrite=False)
    calls = []
    real = store._exchange
    monkeypatch.setattr(store, "_exchange", lambda a, b: calls.append((a, b)) or real(a, b))
    store.publish_dir(staged("second"), out, overwrite=True)
    assert (out / "model.pt").read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["run"]
    assert len(calls) == 1
    monkeypatch.setattr(store, "_exchange", lambda a, b: False)  # no atomic swap: the two renames
    store.publish_dir(staged("third"), out, overwrite=True)
    assert (out / "model.pt").read_text() == "third" and [p.name for p in tmp_path.iterdir()] == ["run"]
