"""2 CPU processes (gloo, a subprocess script) give the 1-process metric values despite DistributedSampler padding
(the per-example scores U-LiRA, NeurIPS 2023 and KLOM included)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "ddp_metrics.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("ddp_metrics", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_two_processes_match_one_process(tmp_path):
    output = tmp_path / "ddp.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(output)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(output.read_text())
    script = _load_script()
    # The splits are uneven, so each shard was padded with a repeated sample.
    for split, n in {**script.SIZES, "per_example": script.PER_EXAMPLE_SIZE}.items():
        assert payload["shard_sizes"][split] * 2 == n + 1
    single = script.single_process()
    assert payload["values"].keys() == single.keys()
    for name, values in single.items():
        assert payload["values"][name] == pytest.approx(values, abs=1e-9), name
    assert 0.0 < single["mia_efficacy"][0] < 1.0 and single["loss_mia"][1] > 0.0  # non-degenerate values
    # the per-example scores (keys in sorted order): half the examples are told apart, half are not
    auc = single["ulira"][0]
    forgetting_quality = single["neurips"][1]
    klom_mean = single["klom"][0]
    assert 0.6 < auc < 0.95 and 0.0 < forgetting_quality < 1.0 and klom_mean > 0.0
