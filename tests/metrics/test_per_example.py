"""Per-example forgetting scores: φ, U-LiRA, the NeurIPS 2023 score (against a slow reference), KLOM."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_unlearn.metrics import KLOM, NeurIPSForgettingScore, ULiRA
from lightning_unlearn.metrics.functional import (
    klom,
    logit_margin,
    logit_scaled_confidence,
    neurips_epsilons,
    neurips_forgetting_score,
    ulira,
)


def _families(k: int, n: int, shifts: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unlearned ~ N(shift_i, 1), retrained ~ N(0, 1), per example i; ``k`` models each."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, n, generator=g, dtype=torch.float64) + shifts, torch.randn(k, n, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------------- φ and margins
def test_phi_matches_float64_reference_and_stays_finite():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=g) * 4
    target = torch.randint(0, 10, (64,), generator=g)
    p = logits.double().softmax(1).gather(1, target[:, None]).squeeze(1)
    assert torch.allclose(logit_scaled_confidence(logits, target), torch.log(p) - torch.log1p(-p), atol=1e-9)
    # p_y -> 1: the naive form gives inf, the log-sum-exp form the exact margin
    extreme = torch.tensor([[60.0, 0.0, 0.0], [800.0, 1.0, -3.0]])
    phi = logit_scaled_confidence(extreme, torch.tensor([0, 0]))
    assert torch.isfinite(phi).all()
    assert phi[0].item() == pytest.approx(60.0 - math.log(2.0), abs=1e-12)
    assert phi[1].item() == pytest.approx(799.0 - math.log1p(math.exp(-4.0)), abs=1e-9)
    assert logit_margin(extreme, torch.tensor([0, 1])).tolist() == [60.0, -799.0]


# ---------------------------------------------------------------------------------- NeurIPS 2023
def _slow_epsilon(u: list[float], r: list[float], delta: float = 1e-5, cap: float = 50.0) -> float:
    """The challenge's per-example ε with plain loops: every threshold and every interval, one at a time."""
    med = lambda xs: (sorted(xs)[(len(xs) - 1) // 2] + sorted(xs)[len(xs) // 2]) / 2  # noqa: E731
    pos, neg = (r, u) if med(r) > med(u) else (u, r)
    rp, rn = max(pos) - min(pos), max(neg) - min(neg)
    if max(rp, rn) == 0:
        return 0.0 if pos[0] == neg[0] else cap
    if min(rp, rn) / max(rp, rn) < 0.01:
        return cap
    values = sorted(pos + neg)

    def eps_of(fpr: float, fnr: float) -> float | None:
        if fpr == 0 and fnr == 0:
            return math.inf
        if fpr == 0 or fnr == 0:
            return None
        cands = []
        if 1 - delta - fpr > 0:
            cands.append(math.log(1 - delta - fpr) - math.log(fnr))
        if 1 - delta - fnr > 0:
            cands.append(math.log(1 - delta - fnr) - math.log(fpr))
        return max(max(cands), 0.0) if cands else 0.0

    found = []
    for t in values:  # single threshold: positive iff x >= t
        fpr = sum(x >= t for x in neg) / len(neg)
        fnr = sum(x < t for x in pos) / len(pos)
        found.append(eps_of(fpr, fnr))
    peaky, other = (pos, neg) if rp <= rn else (neg, pos)
    for i, lo in enumerate(values):  # interval: the peakier one iff lo <= x <= hi
        for hi in values[i:]:
            fpr = sum(lo <= x <= hi for x in other) / len(other)
            fnr = sum(not lo <= x <= hi for x in peaky) / len(peaky)
            found.append(eps_of(fpr, fnr))
    kept = [e for e in found if e is not None]
    return min(max(kept), cap) if kept else 0.0


def _slow_forgetting_quality(eps: list[float], k: int) -> float:
    top = math.ceil(math.log(k - 1))
    total = 0.0
    for e in eps:
        start, points = 0.0, 1.0
        got = 0.0
        while start + 0.5 <= top:
            if e < start + 0.5:
                got = points
                break
            start, points = start + 0.5, points / 2
        total += got
    return total / len(eps)


def test_neurips_score_equals_slow_reference():
    k, n = 12, 24
    shifts = torch.linspace(0.0, 4.0, n, dtype=torch.float64)  # known separations: none ... 4 standard deviations
    u, r = _families(k, n, shifts)
    eps = neurips_epsilons(u, r)
    slow = [_slow_epsilon(u[:, i].tolist(), r[:, i].tolist()) for i in range(n)]
    assert eps.tolist() == pytest.approx(slow, abs=1e-9)
    f = neurips_forgetting_score(u, r)["forgetting_quality"]
    assert f == pytest.approx(_slow_forgetting_quality(slow, k), abs=1e-6)
    # separation shows: the well-separated half scores lower than the overlapping half
    assert eps[n // 2 :].mean() > eps[: n // 2].mean()


def test_neurips_score_ideal_vs_separated_and_final_score():
    k, n = 16, 40
    same = neurips_forgetting_score(*_families(k, n, torch.zeros(n)))["forgetting_quality"]
    apart = neurips_forgetting_score(*_families(k, n, torch.full((n,), 10.0)))["forgetting_quality"]
    mid = neurips_forgetting_score(*_families(k, n, torch.ones(n)))["forgetting_quality"]
    assert apart == 0.0  # perfectly separated: ε = inf -> beyond every bucket
    # identical distributions: measured F ≈ 0.13 at K = 16 (0.18 at K = 8, 0.08 at K = 64; the many interval
    # rules find chance separations among few samples), shift of 1 sd ≈ 0.09, 3 sd ≈ 0.02
    assert same > mid > apart
    assert same > 0.08
    out = neurips_forgetting_score(*_families(k, n, torch.zeros(n)), retain_accuracy=(0.9, 1.0), test_accuracy=(0.8, 0.8))
    assert out["score"] == pytest.approx(out["forgetting_quality"] * 0.9, abs=1e-12)


def test_neurips_single_threshold_rules_only():
    u, r = _families(12, 10, torch.linspace(0.0, 3.0, 10, dtype=torch.float64))
    both, single = neurips_epsilons(u, r), neurips_epsilons(u, r, interval_rules=False)
    assert (single <= both + 1e-12).all() and (single < both).any()


def test_neurips_edge_cases():
    k = 8
    point = torch.zeros(k, 1, dtype=torch.float64)
    spread = torch.linspace(-1, 1, k, dtype=torch.float64)[:, None]
    assert neurips_epsilons(point, spread).item() == 50.0  # a point mass against a spread: the challenge's cap
    assert neurips_epsilons(point, point).item() == 0.0  # identical constants: nothing to tell apart
    assert neurips_epsilons(point, point + 1).item() == 50.0  # distinct constants: perfect separation


# ---------------------------------------------------------------------------------- U-LiRA
def test_ulira_identical_near_half_separated_near_one():
    k, n = 16, 400
    same = ulira(*_families(k, n, torch.zeros(n)))
    assert abs(same["auc"] - 0.5) < 0.05
    assert same["tpr@1%fpr"] < 0.05 and same["tpr@5%fpr"] < 0.12
    apart = ulira(*_families(k, n, torch.full((n,), 3.0)))
    assert apart["auc"] > 0.95 and apart["tpr@1%fpr"] > 0.4  # measured at K = 16: 0.971, 0.58
    mid = ulira(*_families(k, n, torch.full((n,), 1.0)))
    assert same["auc"] < mid["auc"] < apart["auc"]


def test_ulira_deterministic_outputs_use_the_variance_floor():
    u = torch.zeros(4, 10, dtype=torch.float64)
    r = torch.ones(4, 10, dtype=torch.float64)
    assert ulira(u, r)["auc"] == 1.0


# ---------------------------------------------------------------------------------- KLOM
def test_klom_identical_small_separated_large():
    k, n = 64, 100
    same = klom(*_families(k, n, torch.zeros(n)))
    apart = klom(*_families(k, n, torch.full((n,), 6.0)))
    assert same["p50"] < 1.0  # measured 0.52 at K = 64 (binned KL of two samples of 64: 3.6 at K = 16, 6.2 at K = 8)
    assert apart["p50"] > 5.0  # disjoint supports: every unlearned bin meets the eps floor, log(1/1e-5) ≈ 11.5
    u = torch.randn(8, 5, dtype=torch.float64)
    assert klom(u, u.clone())["p99"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------- Metric classes
def test_metric_classes_equal_functional_and_drop_repeated_indices():
    k, n = 12, 30
    u, r = _families(k, n, torch.linspace(0, 2, n, dtype=torch.float64))
    for metric, fn in (
        (ULiRA(), lambda a, b: ulira(a, b)),
        (NeurIPSForgettingScore(), lambda a, b: neurips_forgetting_score(a, b)),
        (KLOM(), lambda a, b: klom(a, b)),
    ):
        metric.update(u[:, :20], r[:, :20], torch.arange(20))
        metric.update(u[:, 18:], r[:, 18:], torch.arange(18, n))  # 18, 19 repeated, as DistributedSampler pads
        assert metric.compute() == pytest.approx(fn(u, r), abs=1e-12)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ulira(torch.zeros(1, 5), torch.zeros(4, 5)), "`unlearned` holds 1 model"),
        (lambda: neurips_forgetting_score(torch.zeros(2, 5), torch.zeros(2, 5)), "`unlearned` holds 2 model"),
        (lambda: klom(torch.zeros(4, 5), torch.zeros(4, 6)), "`unlearned` has 5 examples but `retrained` has 6"),
        (lambda: klom(torch.zeros(4), torch.zeros(4, 6)), "`unlearned` must have shape (models, examples)"),
        (lambda: ulira(torch.full((4, 3), float("nan")), torch.zeros(4, 3)), "`unlearned` holds 12 non-finite"),
        (lambda: neurips_epsilons(torch.zeros(4, 3), torch.tensor([[math.inf] * 3] * 4)), "`retrained` holds 12 non-finite"),
        (lambda: logit_scaled_confidence(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long)), "targets of `logits`"),
        (lambda: ULiRA(n_folds=1), "`n_folds` must be an int >= 2"),
    ],
)
def test_bad_input_one_line_errors(call, message):
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert message in str(err.value)
    assert "\n" not in str(err.value)
