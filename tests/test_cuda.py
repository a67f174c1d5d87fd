"""On a CUDA device (skipped cleanly without one, as on CI): a request served under bf16-mixed, and the relearning
probe run under the same precision on the device.

    python -m pytest -q tests/test_cuda.py
"""

from __future__ import annotations

import copy

import pytest
import torch

from lightning_unlearn import create_method, make_trainer, unlearn
from lightning_unlearn.callbacks import RelearningProbe
from lightning_unlearn.outputs import predict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU = {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"}


def test_class_request_served_under_bf16_mixed_on_the_gpu(mnist_dm, original_lenet):
    dm = mnist_dm("class")
    before = copy.deepcopy(original_lenet.state_dict())
    method = create_method("NegGradPlus", original_lenet)
    model = unlearn(original_lenet, dm, method=method, trainer_kwargs=dict(GPU))
    assert method.outcome is not None and method.outcome.reached, method.outcome
    assert predict(model.cpu().float(), dm.dataloader("test_forget")).accuracy <= 0.05
    assert all(torch.equal(v, before[k]) for k, v in original_lenet.state_dict().items())  # the user's model untouched


def test_relearning_probe_runs_under_the_runs_precision_on_the_gpu(mnist_dm, original_lenet):
    dm = mnist_dm("class")
    probe = RelearningProbe(epochs=2, lr=1e-2)
    method = create_method("GradientAscent", original_lenet, max_epochs=1, lr=2e-3, target=None, guard=None)
    dtypes: list[torch.dtype] = []
    hook = method.model.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    try:
        make_trainer(1, [probe], limit_val_batches=0, **GPU).fit(method, datamodule=dm)
    finally:
        hook.remove()
    assert probe.result is not None and len(probe.result.forget_accuracy) == 3
    assert all(0.0 <= a <= 1.0 for a in probe.result.forget_accuracy)
    assert torch.bfloat16 in dtypes  # the steps ran under bf16 autocast (relearn under a precision: test_relearning.py)
