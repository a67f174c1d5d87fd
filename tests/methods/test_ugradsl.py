"""UGradSL / UGradSL+: GLS loss, self-adaptive rate, one mixed forward, epochs, bad input, quality vs GA / FT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lightning_unlearn import NonFiniteLossError, make_trainer, unlearn
from lightning_unlearn.methods import UGradSL, UGradSLPlus, adaptive_smoothing_rate, gls_cross_entropy
from lightning_unlearn.models import LeNet5
from quality import mean, per_seed, quality


@pytest.mark.parametrize("alpha", [-0.8, -0.2, 0.3, 1.0])
def test_gls_cross_entropy_equals_eq6_decomposition(alpha):
    torch.manual_seed(0)
    logits, y, k = torch.randn(16, 10), torch.randint(0, 10, (16,)), 10
    per_label = torch.stack([F.cross_entropy(logits, torch.full_like(y, c), reduction="none") for c in range(k)], 1)
    own = per_label.gather(1, y[:, None]).squeeze(1)
    others = per_label.sum(1) - own
    eq6 = (1 + (1 - k) / k * alpha) * own + alpha / k * others
    assert torch.allclose(gls_cross_entropy(logits, y, alpha, reduction="none"), eq6, atol=1e-5)
    soft = (1 - alpha) * F.one_hot(y, k) + alpha / k  # the GLS target itself
    assert torch.allclose(gls_cross_entropy(logits, y, alpha), F.cross_entropy(logits, soft.float()), atol=1e-5)
    per_sample = torch.full((16,), alpha)
    assert torch.allclose(gls_cross_entropy(logits, y, per_sample, reduction="sum"), eq6.sum(), atol=1e-4)


def test_gls_alpha_zero_is_plain_cross_entropy_and_bad_alpha():
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(gls_cross_entropy(logits, y, 0.0), F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match=r"`alpha` must be finite and <= 1"):
        gls_cross_entropy(logits, y, 1.5)


def test_adaptive_rate_counts_close_retain_neighbours():
    forget = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    retain = torch.tensor([[1.0, 0.01], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    # d = (1 - cos)/2: forget 0 is close to retain 0 and 1, forget 1 to retain 2; retain 3 is opposite (d = 1).
    alpha = adaptive_smoothing_rate(retain, forget, beta=0.05)
    assert alpha.tolist() == [-1.0, -0.5]  # c = [2, 1] over |B_f| = 2 (SPEC.md)
    assert adaptive_smoothing_rate(retain, forget, beta=0.0).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.5}, r"`p` must be in \[0, 1\], got 1.5"),
        ({"p": -0.1}, r"`p` must be in \[0, 1\], got -0.1"),
        ({"beta": 2.0}, r"`beta` must be in \[0, 1\], got 2.0"),
        ({"alpha": 3.0}, r"`alpha` must be None \(self-adaptive\) or a finite smoothing rate <= 1, got 3.0"),
    ],
)
def test_bad_arguments(kwargs, message):
    for cls in (UGradSL, UGradSLPlus):
        with pytest.raises(ValueError, match=message):
            cls(LeNet5(), **kwargs)


def test_empty_retain_set_names_the_retain_free_methods(mnist_dm):
    dm = mnist_dm("class")
    saved = dm.indices["retain"]
    dm.indices["retain"] = np.empty(0, dtype=np.int64)
    try:
        for cls in (UGradSL, UGradSLPlus):
            with pytest.raises(ValueError, match=r"needs a non-empty retain set.*Retain-free methods: .*BoundaryShrink.*RandomLabel"):
                cls(LeNet5()).check_data(dm)
    finally:
        dm.indices["retain"] = saved


def test_runaway_ascent_halts_with_a_clear_message(mnist_dm, original_lenet):
    with pytest.raises(NonFiniteLossError, match=r"UGradSL: the unlearning loss became (nan|inf|-inf)"):
        # Without a request (a request stops the run and returns its best state instead of raising).
        unlearn(original_lenet, mnist_dm("random"), method="UGradSL", p=0.0, alpha=-1.0, lr=1e4, max_epochs=3,
                target=None, guard=None)


@pytest.mark.parametrize(("cls", "primary"), [(UGradSL, "forget"), (UGradSLPlus, "retain")])
def test_one_forward_per_step_and_epoch_length(mnist_dm, original_lenet, cls, primary):
    dm = mnist_dm("random")
    method = cls(original_lenet, max_epochs=1, lr=1e-4, target=None, guard=None)  # one epoch, no request's checks
    calls = []
    # Training forwards only (the model is in train mode): setup's 2-sample input check runs in eval mode.
    method.model.register_forward_hook(lambda m, inputs, _o: calls.append(inputs[0].shape[0]) if m.training else None)
    make_trainer(1, limit_val_batches=0).fit(method, datamodule=dm)
    steps = int(np.ceil(len(dm.indices[primary]) / dm.batch_size))
    assert method.trainer.global_step == steps
    assert len(calls) == steps  # one forward of the concatenated batch per step, no extra embedding pass
    assert calls[0] == 2 * dm.batch_size


# UGradSL+'s defaults are set so that it stays stable on class-wise forgetting even without a
# stopping rule (lr >= 5e-3 lets the ascent collapse the model there); on random forgetting it
# needs a larger step to move at all.
OPTIONS = {("random", "UGradSLPlus"): {"lr": 0.01, "p": 0.99, "max_epochs": 2}}


# Paired statistic: mean over SEEDS of gap(baseline) - gap(method), each run under the benchmark's
# protocol (the scenario's stopping rule, checked ~8 times per pass). Measured per seed:
#   class,  FineTune - UGradSLPlus: +0.011, +0.027, +0.006 (mean +0.015, spread 0.020)
#   random, FineTune - UGradSLPlus: +0.004, -0.001, +0.004 here, but up to +0.211 on one seed under another
#   CPU configuration (spread 0.21): not asserted.
#   random, GradientAscent - UGradSL: +0.196, -0.009, +0.044 (mean +0.077, spread 0.205: not asserted)
# The papers' ordering is asserted only as far as it holds with a margin above the spread: UGradSL+
# is at least on par with Fine-Tune class-wise (within 3 points; over 4 CPU configurations per seed 0.000-0.027). Class-wise, UGradSL against Gradient Ascent
# is not asserted: GradientAscent - UGradSL = +0.023, -0.331, -0.097 — UGradSL collapses the model
# on two seeds in three before the class-wise rule fires (its defaults do not transfer across seeds).
@pytest.mark.parametrize(
    ("scenario", "method", "baseline", "bound"),
    [
        ("class", "UGradSLPlus", "FineTune", -0.03),
    ],
)
@quality
def test_average_gap_against_the_base_method(quality_run, scenario, method, baseline, bound):
    def gap(name: str, seed: int) -> float:
        return quality_run(name, scenario, seed, stopping=True, **OPTIONS.get((scenario, name), {}))["average_gap"]

    diff = per_seed(f"{baseline}-{method}/average_gap", lambda s: gap(baseline, s) - gap(method, s))
    assert mean(diff) > bound, diff
