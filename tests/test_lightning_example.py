"""examples/lit_backbone_classifier.py, a LightningCLI script left as a user writes it (a ReLU after the last
linear layer, its own LightningDataModule and preprocessing), trained unchanged with the recorder attached
by command-line flags; then every registered method serves a class-wise and an index request on it,
from Python and from the CLI, and either reaches the request's target or says why not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from lightning_unlearn import ClassForget, IndexForget, UnlearningDataModule, available_methods, unlearn
from lightning_unlearn.cli import main
from lightning_unlearn.models import HeadNotFoundError
from lightning_unlearn.request import UnlearningTargetWarning

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REQUESTS = {"class": ClassForget(3), "index": IndexForget(list(range(0, 600, 20)))}
CLI_REQUESTS = {"class": ["--data.forget", "ClassForget", "--data.forget.classes", "3"],
                "index": ["--data.forget", "IndexForget", "--data.forget.indices", str(list(range(0, 600, 20)))]}
# BoundaryExpanding adds a neuron to the last linear layer, whose output this model does not return.
REFUSED = {"BoundaryExpanding": "applies operations outside its submodules after its final linear layer 'backbone.l2'"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """The user's own training run, unchanged, through its own CLI: ``(checkpoint, recording)``."""
    folder = tmp_path_factory.mktemp("user_run")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "lit_backbone_classifier.py"), "fit", "--trainer.max_epochs", "30",
         "--trainer.enable_progress_bar", "false", "--trainer.callbacks+=lightning_unlearn.PrototypeRecorder",
         "--trainer.callbacks.path", "recording.pt"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = next(folder.glob("lightning_logs/version_0/checkpoints/*.ckpt"))
    return checkpoint, folder / "recording.pt"


@pytest.fixture(scope="module")
def example_module():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import lit_backbone_classifier

        yield lit_backbone_classifier
    finally:
        sys.path.remove(str(EXAMPLES))


def _options(name: str, recording: Path) -> dict:
    if name == "NaivePS":
        return {"recording": str(recording)}
    return {"max_epochs": 3} if name == "Retrain" else {}  # the reference needs no full budget here


@pytest.mark.parametrize("request_kind", REQUESTS)
def test_every_method_serves_the_request_or_says_why_not_from_python(trained, example_module, request_kind):
    checkpoint, recording = trained
    model = example_module.LitClassifier.load_from_checkpoint(checkpoint)
    dm = UnlearningDataModule(datamodule=example_module.DigitsDataModule(), forget=REQUESTS[request_kind])
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    results = {}
    for name in available_methods():
        if name in REFUSED:
            with pytest.raises(HeadNotFoundError, match=REFUSED[name]):
                unlearn(model, dm, method=name)
            results[name] = "refused"
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome = getattr(unlearn(model, dm, method=name, **_options(name, recording)), "unlearning_outcome", None)
        said = [str(w.message) for w in caught if issubclass(w.category, UnlearningTargetWarning)]
        if outcome is None or outcome.target is None:  # Retrain: the reference, no target
            results[name] = "reference"
        elif outcome.reached:
            results[name] = "reached"
        else:
            assert said and all(text.startswith(f"{name}") for text in said), (name, outcome.summary())
            results[name] = "not reached, said why"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in kept.items())  # the user's model is untouched
    print(request_kind, results)
    assert sum(r == "reached" for r in results.values()) >= len(results) // 2, results


@pytest.mark.parametrize("request_kind", CLI_REQUESTS)
def test_every_method_serves_the_request_or_says_why_not_from_the_cli(trained, tmp_path, monkeypatch, capsys, request_kind):
    checkpoint, recording = trained
    monkeypatch.syspath_prepend(str(EXAMPLES))
    reached = {}
    for name in available_methods():
        out = tmp_path / name
        args = ["unlearn", "--method", name, "--method.model", "lit_backbone_classifier.LitClassifier",
                "--method.checkpoint", str(checkpoint), "--data.datamodule", "lit_backbone_classifier.DigitsDataModule",
                *CLI_REQUESTS[request_kind], "--output", str(out), "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false"]
        if name == "NaivePS":
            args += ["--method.recording", str(recording)]
        if name == "Retrain":
            args += ["--method.max_epochs", "3"]
        if name in REFUSED:
            with pytest.raises(SystemExit) as exit_info:
                main(args)
            assert exit_info.value.code == 2 and REFUSED[name] in capsys.readouterr().err
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            main(args)
        said = [str(w.message) for w in caught if issubclass(w.category, UnlearningTargetWarning)]
        outcome = json.loads((out / "outcome.json").read_text()) if (out / "outcome.json").exists() else None
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["dataset"] == "custom:lit_backbone_classifier.DigitsDataModule"
        reached[name] = None if outcome is None or outcome.get("target") is None else outcome["reached"]
        if reached[name] is False:
            assert said and all(text.startswith(name) for text in said), name  # the warning saying why
    print(request_kind, reached)
    assert sum(bool(r) for r in reached.values()) >= len(reached) // 2, reached
