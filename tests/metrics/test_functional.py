"""Functional metrics against independent numpy/scipy/sklearn computations; Metric classes == functional."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax, softmax
from scipy.stats import entropy
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.svm import SVC

from lightning_unlearn.metrics import (
    AverageGap,
    EntropyDistance,
    LossMIA,
    MIAEfficacy,
    ParameterChange,
    PredictionKL,
    PrototypeSimilarity,
    Runtime,
    SplitAccuracy,
    UnlearningAccuracy,
)
from lightning_unlearn.metrics.functional import (
    average_gap,
    entropy_distance,
    loss_mia,
    mia_efficacy,
    parameter_change,
    prediction_kl,
    prototype_similarity,
    split_accuracy,
    unlearning_accuracy,
)
from lightning_unlearn.models import LeNet5
from lightning_unlearn.metrics.functional.mia import _mia_efficacy_compute, _monotone_threshold

K = 5


def _split(n: int, seed: int, scale: float, offset: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, K, (n,), generator=g)
    logits = torch.randn(n, K, generator=g) + scale * torch.nn.functional.one_hot(target, K)
    return logits, target, torch.arange(offset, offset + n)


@pytest.fixture(scope="module")
def data():
    # Members are confidently right, non-members less so, the forget set in between.
    return {"retain": _split(300, 0, 4.0), "test": _split(120, 1, 1.5, 10_000), "forget": _split(90, 2, 3.0, 20_000)}


def _feed(metric, data, splits, batch=37, duplicates=True):
    """Update in shuffled batches, re-feeding some samples (as DistributedSampler padding does)."""
    for split in splits:
        logits, target, idx = data[split]
        order = torch.randperm(len(target), generator=torch.Generator().manual_seed(7))
        if duplicates:
            order = torch.cat([order, order[:5]])
        for chunk in order.split(batch):
            metric.update(logits[chunk], target[chunk], idx[chunk], split)


def test_accuracy_and_ua(data):
    logits, target, idx = data["forget"]
    expected = accuracy_score(target.numpy(), logits.numpy().argmax(1))
    assert float(split_accuracy(logits, target)) == pytest.approx(expected)
    assert float(unlearning_accuracy(logits, target)) == pytest.approx(1 - expected)
    acc, ua = SplitAccuracy(), UnlearningAccuracy()
    for chunk in torch.cat([torch.randperm(90), torch.arange(4)]).split(16):  # repeated indices count once
        acc.update(logits[chunk], target[chunk], idx[chunk])
        ua.update(logits[chunk], target[chunk], idx[chunk])
    assert float(acc.compute()) == pytest.approx(expected) and float(ua.compute()) == pytest.approx(1 - expected)


def test_mia_efficacy(data):
    (rl, ry, _), (tl, ty, _), (fl, fy, _) = data["retain"], data["test"], data["forget"]
    conf = {s: softmax(data[s][0].numpy().astype(np.float64), axis=1)[np.arange(len(data[s][1])), data[s][1].numpy()] for s in data}
    x = np.concatenate([conf["retain"][:120], conf["test"]]).reshape(-1, 1)
    y = np.r_[np.ones(120), np.zeros(120)]
    svc = SVC(C=3, gamma="auto").fit(x, y)
    labels = svc.predict(x)  # the attack: the best rule "member iff p_y >= t" against the SVC's labels (ties: highest t)
    candidates = [*np.unique(x), np.inf]
    cost = [int(((x.ravel() >= t) != labels).sum()) for t in candidates]
    tau = max(t for t, c in zip(candidates, cost) if c == min(cost))
    expected = 1 - (conf["forget"] >= tau).mean()
    value = float(mia_efficacy(rl, ry, tl, ty, fl, fy))
    assert value == pytest.approx(expected) and 0.0 < value < 1.0
    assert abs(value - (1 - svc.predict(conf["forget"].reshape(-1, 1)).mean())) <= 2 / 90  # the SVC is nearly monotone here
    metric = MIAEfficacy()
    _feed(metric, data, ("forget", "test", "retain"))
    assert float(metric.compute()) == pytest.approx(value)


def test_loss_mia(data):
    (fl, fy, fi), (tl, ty, ti) = data["forget"], data["test"]
    tl, ty, ti = tl[:90], ty[:90], ti[:90]  # equal sizes: no subsampling, so sklearn sees the same data
    ce = {n: -log_softmax(z.numpy().astype(np.float64), axis=1)[np.arange(90), y.numpy()] for n, z, y in (("f", fl, fy), ("t", tl, ty))}
    x, y = np.r_[ce["f"], ce["t"]].reshape(-1, 1), np.r_[np.ones(90), np.zeros(90)]
    scores = cross_val_score(LogisticRegression(), x, y, cv=StratifiedShuffleSplit(10, test_size=0.1, random_state=0))
    mean, std = loss_mia(fl, fy, tl, ty)
    assert float(mean) == pytest.approx(scores.mean()) and float(std) == pytest.approx(scores.std())
    # Balanced subsampling is keyed by dataset index: the value does not depend on sample order.
    full = loss_mia(fl, fy, *data["test"][:2], fi, data["test"][2])
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(3))
    shuffled = loss_mia(fl, fy, data["test"][0][perm], data["test"][1][perm], fi, data["test"][2][perm])
    assert [float(v) for v in full] == pytest.approx([float(v) for v in shuffled])
    metric = LossMIA()
    _feed(metric, {"forget": data["forget"], "test": data["test"]}, ("test", "forget"))
    assert [float(v) for v in metric.compute()] == pytest.approx([float(v) for v in full])


def test_entropy_distance_is_js_divergence(data):
    a, b = data["forget"][0], data["forget"][0].flip(0)
    expected = (jensenshannon(softmax(a.double().numpy(), 1), softmax(b.double().numpy(), 1), axis=1) ** 2).mean()
    assert float(entropy_distance(a, b)) == pytest.approx(expected, rel=1e-9)
    assert float(entropy_distance(a, b)) == pytest.approx(float(entropy_distance(b, a)), abs=1e-15)  # symmetric
    assert float(entropy_distance(a, a)) == 0.0  # identical distributions
    assert 0.0 < float(entropy_distance(a, b)) <= np.log(2)
    metric = EntropyDistance()
    for chunk in torch.cat([torch.randperm(90), torch.arange(9)]).split(20):
        metric.update(a[chunk], b[chunk], data["forget"][2][chunk])
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-9)


def test_prediction_kl(data):
    a, b = data["test"][0], data["test"][0] + 3.0 * torch.nn.functional.one_hot(torch.arange(120) % 2, K)
    s = np.bincount(a.numpy().argmax(1), minlength=K) / 120 + 1e-6
    s_ref = np.bincount(b.numpy().argmax(1), minlength=K) / 120 + 1e-6
    expected = entropy(s / s.sum(), s_ref / s_ref.sum())
    assert float(prediction_kl(a, b)) == pytest.approx(expected, rel=1e-9) and expected > 0.1
    assert float(prediction_kl(a, a)) == pytest.approx(0.0, abs=1e-12)
    metric = PredictionKL(num_classes=K)
    for chunk in torch.cat([torch.randperm(120), torch.arange(7)]).split(50):
        metric.update(a[chunk], b[chunk], data["test"][2][chunk])
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-9)


def test_weight_metrics_and_gap():
    torch.manual_seed(0)
    net, other = LeNet5(), LeNet5()
    w, w_ref = net.fc.weight.detach(), other.fc.weight.detach()
    expected = np.diag(cosine_similarity(w.double().numpy(), w_ref.double().numpy()))
    assert prototype_similarity(w, w_ref).numpy() == pytest.approx(expected)
    psc = PrototypeSimilarity(num_classes=10)
    psc.update(w, w_ref)
    assert psc.compute().numpy() == pytest.approx(expected)

    change = parameter_change(net, other)
    pairs = [(p.detach().double().numpy(), q.detach().double().numpy()) for p, q in zip(net.parameters(), other.parameters())]
    assert change["l1"] == pytest.approx(sum(np.abs(p - q).sum() for p, q in pairs))
    head = (net.fc.weight, other.fc.weight), (net.fc.bias, other.fc.bias)
    assert change["l1_head"] == pytest.approx(sum((p - q).abs().sum().item() for p, q in head))
    assert list(change["relative"].values()) == pytest.approx([np.linalg.norm(p - q) / np.linalg.norm(q) for p, q in pairs])
    metric = ParameterChange()
    metric.update(net, other)
    out = metric.compute()
    assert float(out["l1"]) == pytest.approx(change["l1"]) and out["relative"].tolist() == pytest.approx(list(change["relative"].values()))

    u, r = [0.02, 0.95, 0.90, 0.40], [0.0, 0.97, 0.92, 0.50]
    assert float(average_gap(u, r)) == pytest.approx(np.abs(np.subtract(u, r)).mean())
    keys = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
    assert float(average_gap(dict(zip(keys, u)), dict(zip(keys, r)))) == pytest.approx(0.04)
    gap = AverageGap()
    gap.update(u, r)
    assert float(gap.compute()) == pytest.approx(0.04)
    runtime = Runtime()
    runtime.update(1.25)
    runtime.update(0.5)
    assert float(runtime.compute()) == pytest.approx(1.75)


def test_bad_input(data):
    logits, target, idx = data["forget"]
    with pytest.raises(ValueError, match=r"`logits` is empty \(0 samples\)"):
        split_accuracy(torch.zeros(0, K), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="`logits` has 5 classes but `reference_logits` has 4"):
        entropy_distance(logits, logits[:, :4])
    with pytest.raises(ValueError, match=r"`weight` has shape \(10, 84\) but `reference_weight` has \(9, 84\)"):
        prototype_similarity(torch.zeros(10, 84), torch.zeros(9, 84))
    with pytest.raises(ValueError, match="`weight` is on cpu but `reference_weight` is on meta"):
        prototype_similarity(torch.zeros(10, 84), torch.zeros(10, 84, device="meta"))
    with pytest.raises(ValueError, match="`indices` .* are required"):
        SplitAccuracy().update(logits, target, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`split` must be one of \\('retain', 'test', 'forget'\\), got 'train'"):
        MIAEfficacy().update(logits, target, idx, "train")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MIA-efficacy needs a non-empty retain split"):
        metric = MIAEfficacy()
        metric.update(logits, target, idx, "forget")
        metric.update(logits, target, idx, "test")
        metric.compute()
    with pytest.raises(ValueError, match="The loss MIA needs at least 20 samples"):
        loss_mia(logits[:10], target[:10], logits, target)
    with pytest.raises(ValueError, match=r"`unlearned` must hold 4 values"):
        average_gap([0.1, 0.2], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match=r"The targets of `logits` must lie in \[0, 4\]"):
        split_accuracy(logits, target + 10)


def test_mia_efficacy_attacker_cannot_invert():
    # Members at p_y ≈ 1 with a few low-confidence ones, non-members a little below 1: the RBF SVC
    # cannot resolve the two near 1 and learns "low confidence = member" from the few.
    g = np.random.default_rng(0)
    members = np.r_[1 - g.beta(1, 2000, 290), g.uniform(0, 0.3, 10)]
    non_members = 1 - g.beta(1, 300, 300)
    x, y = np.r_[members, non_members].reshape(-1, 1), np.r_[np.ones(300), np.zeros(300)]
    assert SVC(C=3, gamma="auto").fit(x, y).predict([[0.05]])[0] == 1  # the plain attacker is inverted
    forgotten = torch.full((50,), 0.05, dtype=torch.float64)  # a forget set the model no longer recognises
    retain, test = torch.from_numpy(members), torch.from_numpy(non_members)
    assert float(_mia_efficacy_compute(retain, test, forgotten)) == 1.0  # never called members
    remembered = torch.from_numpy(members[:50].copy())
    assert float(_mia_efficacy_compute(retain, test, remembered)) <= float(_mia_efficacy_compute(retain, test, forgotten))


@pytest.mark.parametrize("seed", range(5))
def test_monotone_threshold_is_the_best_monotone_rule(seed):
    g = np.random.default_rng(seed)
    p, labels = g.choice(np.linspace(0, 1, 15), 60), g.integers(0, 2, 60)
    tau = _monotone_threshold(p, labels)
    disagreements = lambda t: int(((p >= t) != labels).sum())  # noqa: E731
    assert disagreements(tau) == min(disagreements(t) for t in [*np.unique(p), np.inf])
    assert (tau == np.inf) or tau in p
