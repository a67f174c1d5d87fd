"""The examples run (small settings): a user's own LightningModule + one callback, and the CLI walk-through.

The DDP launch script (examples/ddp_unlearn.py) runs in tests/test_distributed.py.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


ONE_THREAD = True  # read by conftest's thread fixture


def test_own_lightning_module_with_one_callback_is_unlearned(tmp_path):
    source = (EXAMPLES / "own_model_callback.py").read_text()
    training_part = source.split("\n    # --- deletion request")[0]
    assert "lightning_unlearn" not in training_part.split("class DigitNet")[1]  # the model and data are the user's own
    namespace = runpy.run_path(str(EXAMPLES / "own_model_callback.py"), run_name="example")
    assert namespace["DigitNet"].__module__ != "lightning_unlearn"
    result = namespace["main"](epochs=8, workdir=str(tmp_path))
    assert (tmp_path / "digitnet.ckpt").is_file()
    # What the example claims, with the spread measured over seeds 0-2 (`main(epochs=8, seed=0..2)`):
    # the user's model is left as it was trained (97.8-99.3% on the deleted records) ...
    assert result["original/forgotten records"] >= 0.95
    # ... the deleted records and digit 7 itself are forgotten (0.0-0.7%, and 0.0% on unseen 7s) ...
    assert result["unlearned/forgotten records"] <= 0.02
    assert result["unlearned/test digit 7"] <= 0.02
    # ... and the other digits keep their accuracy within the utility guard: -1.6 to +1.3 points (93.7/95.6/94.4% ->
    # 95.0/94.0/92.8%). With 30 epochs seeds 0-1 lose 1.9 and 1.5 points; on seed 2 no ridge serves the request
    # within the guard, and Naive PS says so (48% of the records still recognised).
    assert result["unlearned/other test digits"] >= result["original/other test digits"] - 0.03


def test_cli_walkthrough_runs(tmp_path):
    cli = Path(sys.executable).with_name("lightning-unlearn")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "lightning_unlearn.cli"]
    env = dict(os.environ, EPOCHS="1", DATASET="digits", CLI=" ".join(command), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(["bash", str(EXAMPLES / "cli_walkthrough.sh"), str(tmp_path / "work")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    work = tmp_path / "work"
    assert "class_path: lightning_unlearn.methods.PS" in (work / "ps.config.yaml").read_text()  # --print_config
    report = json.loads((work / "ps" / "evaluation.json").read_text())
    assert 0.0 <= report["average_gap"] <= 1.0
    assert report["acc_forget"] == pytest.approx(json.loads((work / "ps" / "metrics.json").read_text())["accuracy"]["forget"])
