"""Per-example evidence of forgetting, from the outputs of many models on the same examples.

A population attack asks "can the forget set, as a whole, be told from unseen data?"; the scores
here ask, for every single example, "can the outputs of the unlearned models on this example be
told from those of models retrained without it?". They take *samples*: one value per model and
example, as ``(K, N)`` tensors (K models, N examples), the unlearned models' in one tensor and the
retrained models' in another.

* :func:`logit_scaled_confidence` (φ = log p_y/(1-p_y)) and :func:`logit_margin`: the per-example statistics.
* :func:`ulira`: a U-LiRA-style per-example likelihood-ratio attack (Hayes et al., 2024) → AUC, TPR at low FPR.
* :func:`neurips_epsilons` / :func:`neurips_forgetting_score`: the NeurIPS 2023 unlearning challenge's
  per-example ε and forgetting score (Triantafillou et al., 2024).
* :func:`klom`: per-example binned KL divergence of unlearned vs retrained margins (Georgiev et al., 2024).

Everything is plain torch on whatever device the inputs are on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_unlearn.metrics.functional._checks import check_logits

NEURIPS_DELTA = 1e-5
NEURIPS_EPSILON_CAP = 50.0
NEURIPS_BUCKET_WIDTH = 0.5
KLOM_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0, 99.0)


# ------------------------------------------------------------------------------ statistics
def logit_scaled_confidence(logits: Tensor, target: Tensor) -> Tensor:
    """φ = log(p_y / (1 - p_y)), computed from the logits without forming p_y (float64).

    ``log p_y - log(1 - p_y) = z_y - logsumexp_{j≠y} z_j``, so φ stays finite and exact where
    p_y rounds to 1 in floating point (large margins), unlike ``log(p) - log(1 - p)``. This is
    also the "correct-class margin" KLOM is computed on.

    Example:
        >>> import torch
        >>> float(logit_scaled_confidence(torch.tensor([[0.0, 0.0]]), torch.tensor([0])))
        0.0
        >>> float(logit_scaled_confidence(torch.tensor([[200.0, 0.0]]), torch.tensor([0])))
        200.0
    """
    check_logits("logits", logits, target)
    if logits.shape[1] < 2:
        raise ValueError(f"`logits` must have at least 2 classes to define 1 - p_y, got shape {tuple(logits.shape)}.")
    z = logits.double()
    target = target.long().view(-1, 1)
    correct = z.gather(1, target).squeeze(1)
    others = z.scatter(1, target, float("-inf"))
    return correct - torch.logsumexp(others, dim=1)


def logit_margin(logits: Tensor, target: Tensor) -> Tensor:
    """The classification margin z_y - max_{j≠y} z_j (float64): positive where the prediction is right."""
    check_logits("logits", logits, target)
    if logits.shape[1] < 2:
        raise ValueError(f"`logits` must have at least 2 classes to define a margin, got shape {tuple(logits.shape)}.")
    z = logits.double()
    target = target.long().view(-1, 1)
    return z.gather(1, target).squeeze(1) - z.scatter(1, target, float("-inf")).amax(dim=1)


# ------------------------------------------------------------------------------ checks
def check_samples(name: str, samples: Tensor, min_models: int = 2) -> Tensor:
    """``samples`` as a float64 ``(K, N)`` tensor with K >= ``min_models``, N >= 1 and every value finite."""
    if not isinstance(samples, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (models, examples), got {type(samples).__name__}.")
    if samples.ndim != 2:
        raise ValueError(f"`{name}` must have shape (models, examples), got shape {tuple(samples.shape)}.")
    if samples.shape[0] < min_models:
        raise ValueError(
            f"`{name}` holds {samples.shape[0]} model(s) per example, expected at least {min_models}: a per-example score"
            " compares distributions over models, and fewer samples cannot estimate one."
        )
    if samples.shape[1] == 0:
        raise ValueError(f"`{name}` holds 0 examples: the score of an empty split is undefined.")
    if not bool(torch.isfinite(samples).all()):
        bad = int((~torch.isfinite(samples)).sum())
        raise ValueError(f"`{name}` holds {bad} non-finite value(s) (NaN or inf): every model's output must be finite.")
    return samples.double()


def _check_pair(a_name: str, a: Tensor, b_name: str, b: Tensor, min_models: int = 2) -> tuple[Tensor, Tensor]:
    a, b = check_samples(a_name, a, min_models), check_samples(b_name, b, min_models)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`{a_name}` has {a.shape[1]} examples but `{b_name}` has {b.shape[1]}: both must hold the same examples"
            " in the same order (shape (models, examples))."
        )
    return a, b.to(a.device)


# ------------------------------------------------------------------------------ U-LiRA
def gaussian_fit(samples: Tensor, min_std: float) -> tuple[Tensor, Tensor]:
    """Per-example mean and standard deviation (unbiased, floored at ``min_std``) of ``(K, N)`` samples."""
    return samples.mean(dim=0), samples.std(dim=0, unbiased=True).clamp_min(min_std)


def _gaussian_logpdf(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


def ulira_scores(
    unlearned_fit: Tensor, retrained_fit: Tensor, observed: Tensor, min_std: float = 1e-2
) -> Tensor:
    """Log-likelihood ratio log N(φ; μ_u, σ_u) - log N(φ; μ_r, σ_r) of each observed value, per example.

    ``unlearned_fit`` and ``retrained_fit`` are the ``(K, N)`` samples the two per-example Gaussians
    are fitted to; ``observed`` is ``(M, N)`` (M models to score). Positive: looks unlearned.
    """
    if min_std <= 0:
        raise ValueError(f"`min_std` must be > 0, got {min_std}.")
    u, r = _check_pair("unlearned_fit", unlearned_fit, "retrained_fit", retrained_fit)
    obs = check_samples("observed", observed, min_models=1).to(u.device)
    if obs.shape[1] != u.shape[1]:
        raise ValueError(f"`observed` has {obs.shape[1]} examples but the fits have {u.shape[1]}.")
    mu_u, sd_u = gaussian_fit(u, min_std)
    mu_r, sd_r = gaussian_fit(r, min_std)
    return _gaussian_logpdf(obs, mu_u, sd_u) - _gaussian_logpdf(obs, mu_r, sd_r)


def _folds(k: int, n_folds: int) -> list[Tensor]:
    return [torch.arange(i, k, n_folds) for i in range(n_folds)]


def ulira(
    unlearned: Tensor,
    retrained: Tensor,
    n_folds: int = 2,
    min_std: float = 1e-2,
    fprs: Sequence[float] = (0.01, 0.05),
) -> dict[str, float]:
    """A U-LiRA-style per-example attack: can a model's φ on an example tell unlearned from retrained?

    Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense of
    Privacy" (arXiv 2403.01218): for every example, Gaussians are fitted to its statistic (φ)
    under unlearned and under retrained models; a model is scored on the example by the log
    likelihood ratio. Here the models of each kind are split into ``n_folds`` folds (model j in
    fold j mod n_folds); each fold is scored with Gaussians fitted on the other folds, so no
    model is scored by a fit that saw it. All (model, example) scores are pooled into one binary
    ROC (unlearned = positive): the attack's AUC and its TPR at each FPR in ``fprs``
    (torchmetrics' ``binary_roc``, interpolated at the FPR). Ideal (indistinguishable): AUC 0.5,
    TPR@x%FPR ≈ x%.

    Args:
        unlearned: ``(K_u, N)`` statistic of N examples under K_u unlearned models.
        retrained: ``(K_r, N)`` the same examples under K_r retrained models.
        n_folds: folds for the held-out scoring; each fit needs >= 2 models, so K >= 2 · n_folds / (n_folds - 1).
        min_std: floor on each per-example standard deviation (a deterministic method gives zero spread).
        fprs: the false-positive rates to report the TPR at.

    Returns:
        ``{"auc": ..., "tpr@1%fpr": ..., "tpr@5%fpr": ...}`` (one key per entry of ``fprs``).
    """
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"`n_folds` must be an int >= 2, got {n_folds!r}.")
    for f in fprs:
        if not 0.0 < f < 1.0:
            raise ValueError(f"`fprs` must lie in (0, 1), got {f}.")
    need = math.ceil(2 * n_folds / (n_folds - 1))
    u, r = _check_pair("unlearned", unlearned, "retrained", retrained, min_models=max(2, need))
    scores, labels = [], []
    for part_u, part_r in zip(_folds(u.shape[0], n_folds), _folds(r.shape[0], n_folds)):
        rest_u = u[[i for i in range(u.shape[0]) if i not in set(part_u.tolist())]]
        rest_r = r[[i for i in range(r.shape[0]) if i not in set(part_r.tolist())]]
        for part, data, label in ((part_u, u, 1), (part_r, r, 0)):
            if part.numel():
                s = ulira_scores(rest_u, rest_r, data[part], min_std).flatten()
                scores.append(s)
                labels.append(torch.full_like(s, label, dtype=torch.long))
    score, label = torch.cat(scores), torch.cat(labels)
    # an order- and tie-preserving map onto [0, 1] (torchmetrics would squash scores outside [0, 1] with a
    # sigmoid, which rounds large log-likelihood ratios to 1.0 and creates ties that are not there)
    distinct, rank = torch.unique(score, sorted=True, return_inverse=True)
    prob = rank.double() / max(distinct.numel() - 1, 1)
    auc = float(binary_auroc(prob, label))
    fpr, tpr, _ = binary_roc(prob, label)
    out = {"auc": auc}
    for f in fprs:
        out[f"tpr@{f * 100:g}%fpr"] = _tpr_at(fpr.double(), tpr.double(), f)
    return out


def _tpr_at(fpr: Tensor, tpr: Tensor, target: float) -> float:
    """TPR of the ROC at FPR ``target``: the best TPR among operating points with FPR <= target."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if bool(ok.any()) else 0.0


# ------------------------------------------------------------------------------ NeurIPS 2023
def _epsilon_from_rates(fpr: Tensor, fnr: Tensor, delta: float) -> Tensor:
    """ε of each (FPR, FNR) pair, NaN for pairs the challenge discards; last dim = decision rules.

    ε = max(log(1-δ-FPR) - log FNR, log(1-δ-FNR) - log FPR), clipped at 0 from below; a rule that
    separates perfectly (FPR = FNR = 0) gives +inf; a rule with exactly one zero rate is discarded
    (too few samples to estimate it); a log of a non-positive number is ignored.
    """
    both_zero = (fpr == 0) & (fnr == 0)
    one_zero = ((fpr == 0) | (fnr == 0)) & ~both_zero
    with torch.no_grad():
        a = torch.log(1 - delta - fpr) - torch.log(fnr)
        b = torch.log(1 - delta - fnr) - torch.log(fpr)
    a = torch.where(torch.isnan(a), torch.full_like(a, float("-inf")), a)
    b = torch.where(torch.isnan(b), torch.full_like(b, float("-inf")), b)
    eps = torch.maximum(a, b).clamp_min(0.0)
    eps = torch.where(both_zero, torch.full_like(eps, float("inf")), eps)
    return torch.where(one_zero, torch.full_like(eps, float("nan")), eps)


def _rates(pos: Tensor, neg: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For each example (rows) the single-threshold and interval rules' FPR/FNR.

    ``pos``, ``neg``: ``(N, K)`` samples sorted along dim 1. ``values``: ``(N, V)`` candidate thresholds
    (every sample value of the example, sorted). Single rule at t: predict positive iff x >= t.
    Interval rule [l, r] (l <= r among the values): predict the *peakier* of the two (``pos`` here,
    after the caller's swap) iff l <= x <= r.
    """
    k_pos, k_neg = pos.shape[1], neg.shape[1]
    pos, neg, values = pos.contiguous(), neg.contiguous(), values.contiguous()
    # counts in float64 (int64 / int would give float32 rates)
    ge_pos = k_pos - torch.searchsorted(pos, values, right=False).double()  # count of pos >= t
    ge_neg = k_neg - torch.searchsorted(neg, values, right=False).double()
    le_pos = torch.searchsorted(pos, values, right=True).double()  # count of pos <= t
    le_neg = torch.searchsorted(neg, values, right=True).double()
    # single threshold (a threshold above every sample adds FPR = 0, FNR = 1: a discarded pair)
    s_fpr, s_fnr = ge_neg / k_neg, 1 - ge_pos / k_pos
    # interval [values[i], values[j]], j >= i: count in = le(values[j]) - lt(values[i]) = le[j] - (K - ge[i])
    in_pos = le_pos[:, None, :] - (k_pos - ge_pos)[:, :, None]
    in_neg = le_neg[:, None, :] - (k_neg - ge_neg)[:, :, None]
    upper = torch.ones(values.shape[1], values.shape[1], dtype=torch.bool, device=values.device).triu()
    i_fpr = (in_neg / k_neg)[:, upper]
    i_fnr = 1 - (in_pos / k_pos)[:, upper]
    return s_fpr, s_fnr, i_fpr, i_fnr


def neurips_epsilons(
    unlearned: Tensor,
    retrained: Tensor,
    delta: float = NEURIPS_DELTA,
    cap: float = NEURIPS_EPSILON_CAP,
    interval_rules: bool = True,
    chunk_size: int = 256,
) -> Tensor:
    """Per-example ε of the NeurIPS 2023 unlearning challenge (Triantafillou et al., arXiv 2406.09073).

    For each example, the unlearned and retrained models' statistics (the challenge uses φ) are two
    empirical distributions; every decision rule of two families is an attack with an FPR and an
    FNR, and ε is the largest ``max(log((1-δ-FPR)/FNR), log((1-δ-FNR)/FPR))`` over the rules (the
    (ε, δ) hypothesis-testing bound; see :func:`_epsilon_from_rates` for the edge cases).

    * Positive class: for each example, whichever of the two has the larger median.
    * Single-threshold rules: "positive iff x >= t", for t at every sample value (the exact set of
      distinct (FPR, FNR) pairs; the challenge's code scans a grid of 100 thresholds per unit).
    * Interval rules: "the peakier distribution (smaller range) iff l <= x <= r", for every pair of
      sample values l <= r (the challenge scans a grid of widths near the peakier one's range).
    * If the smaller range is under 1% of the larger (a near-point-mass distribution against a
      spread one), ε = ``cap`` (the challenge's rule; identical constants give ε = 0).

    ε is clipped to [0, ``cap``]. Enumerating every rule is exact where the challenge's grid is an
    approximation, so ε here is >= the grid's value on the same samples. With few models per side
    the many interval rules find chance separations: two identical distributions give a median ε
    of about 1.6 (K = 8) to 2.1 (K = 64), so compare with the score of retrained models against
    retrained models (the noise floor), and ``interval_rules=False`` keeps the single thresholds only.

    Returns:
        ``(N,)`` float64 ε per example.
    """
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"`delta` must be in [0, 1), got {delta}.")
    u, r = _check_pair("unlearned", unlearned, "retrained", retrained)
    out = []
    for start in range(0, u.shape[1], chunk_size):
        part_u, part_r = u[:, start : start + chunk_size].T, r[:, start : start + chunk_size].T
        out.append(_neurips_epsilons_chunk(part_u, part_r, delta, cap, interval_rules))
    return torch.cat(out)


def _neurips_epsilons_chunk(u: Tensor, r: Tensor, delta: float, cap: float, intervals: bool) -> Tensor:
    """``u``: (N, K_u), ``r``: (N, K_r) → (N,) ε."""
    u, r = u.sort(dim=1).values, r.sort(dim=1).values
    # positive = larger median (torch.median takes the lower middle; use the mean of the two middles)
    med_u, med_r = u.quantile(0.5, dim=1), r.quantile(0.5, dim=1)
    retrain_pos = (med_r > med_u)[:, None]
    if u.shape[1] != r.shape[1]:
        # different model counts: rows cannot be swapped tensor-wise; handle by rows in two groups
        eps = torch.empty(u.shape[0], dtype=torch.float64, device=u.device)
        sel = retrain_pos.squeeze(1)
        if bool(sel.any()):
            eps[sel] = _eps_rows(r[sel], u[sel], delta, cap, intervals)
        if bool((~sel).any()):
            eps[~sel] = _eps_rows(u[~sel], r[~sel], delta, cap, intervals)
        return eps
    pos = torch.where(retrain_pos, r, u)
    neg = torch.where(retrain_pos, u, r)
    return _eps_rows(pos, neg, delta, cap, intervals)


def _eps_rows(pos: Tensor, neg: Tensor, delta: float, cap: float, intervals: bool = True) -> Tensor:
    range_pos = pos[:, -1] - pos[:, 0]
    range_neg = neg[:, -1] - neg[:, 0]
    largest, smallest = torch.maximum(range_pos, range_neg), torch.minimum(range_pos, range_neg)
    values = torch.cat([pos, neg], dim=1).sort(dim=1).values
    s_fpr, s_fnr, _, _ = _rates(pos, neg, values)
    single = _epsilon_from_rates(s_fpr, s_fnr, delta)
    # interval rules: positive = the peakier distribution (smaller range); rates for (peaky, other)
    peaky_is_pos = (range_pos <= range_neg)[:, None]
    if not intervals:
        interval = single[:, :0]
    elif pos.shape[1] == neg.shape[1]:
        peaky = torch.where(peaky_is_pos, pos, neg)
        other = torch.where(peaky_is_pos, neg, pos)
        _, _, i_fpr, i_fnr = _rates(peaky, other, values)
        interval = _epsilon_from_rates(i_fpr, i_fnr, delta)
    else:
        rows = []
        for i in range(pos.shape[0]):
            a, b = (pos[i : i + 1], neg[i : i + 1]) if bool(peaky_is_pos[i]) else (neg[i : i + 1], pos[i : i + 1])
            _, _, i_fpr, i_fnr = _rates(a, b, values[i : i + 1])
            rows.append(_epsilon_from_rates(i_fpr, i_fnr, delta))
        interval = torch.cat(rows)
    all_eps = torch.cat([single, interval], dim=1)
    finite_or_inf = ~torch.isnan(all_eps)
    eps = torch.where(finite_or_inf, all_eps, torch.full_like(all_eps, float("-inf"))).amax(dim=1)
    # every rule discarded: the challenge's code stops there; nothing told them apart, so ε = 0
    eps = torch.where(torch.isinf(eps) & (eps < 0), torch.zeros_like(eps), eps)
    peaky = (largest > 0) & (smallest / torch.where(largest > 0, largest, torch.ones_like(largest)) < 0.01)
    identical_points = (largest == 0) & (pos[:, 0] == neg[:, 0])
    eps = torch.where(peaky, torch.full_like(eps, cap), eps)
    eps = torch.where(identical_points, torch.zeros_like(eps), eps)
    return eps.clamp(0.0, cap)


def neurips_max_epsilon(num_models: int) -> float:
    """The largest ε the buckets resolve with ``num_models`` samples per side: ceil(log(K - 1))."""
    if num_models < 3:
        raise ValueError(
            f"The NeurIPS score needs at least 3 models per side, got {num_models}: with K models ε is resolved up to"
            " log(K - 1), which is 0 for K = 2 (no bucket)."
        )
    return float(math.ceil(math.log(num_models - 1)))


def neurips_example_scores(epsilons: Tensor, num_models: int, bucket_width: float = NEURIPS_BUCKET_WIDTH) -> Tensor:
    """Each example's points: 2/2^n for ε in the n-th bucket (n = 1, 2, ...) of width ``bucket_width``.

    Buckets cover [0, ceil(log(K - 1))) with K models per side (the resolution of K samples);
    an ε beyond the last bucket scores 0. So ε < 0.5 scores 1, [0.5, 1) scores 1/2, and so on.
    """
    top = neurips_max_epsilon(num_models)
    n_buckets = int(math.floor(top / bucket_width + 1e-9))
    index = torch.floor(epsilons.double() / bucket_width)  # 0-based bucket
    points = torch.pow(torch.tensor(0.5, dtype=torch.float64, device=epsilons.device), index)
    return torch.where(index < n_buckets, points, torch.zeros_like(points))


def neurips_forgetting_score(
    unlearned: Tensor,
    retrained: Tensor,
    retain_accuracy: tuple[float, float] | None = None,
    test_accuracy: tuple[float, float] | None = None,
    delta: float = NEURIPS_DELTA,
    interval_rules: bool = True,
) -> dict[str, float]:
    """The NeurIPS 2023 unlearning challenge score (Triantafillou et al., arXiv 2406.09073).

    F is the mean over the examples of :func:`neurips_example_scores` of :func:`neurips_epsilons`
    (1 = no example can be told apart; 0 = every one can). The final score is
    ``F × (RA_u / RA_r) × (TA_u / TA_r)``, with the mean retain and test accuracies of the
    unlearned (``_u``) and retrained (``_r``) models, each given as ``(unlearned, retrained)``.

    Returns:
        ``{"forgetting_quality": F, "score": ..., "epsilon_median": ...}`` (``score`` only with both accuracies).
    """
    u, r = _check_pair("unlearned", unlearned, "retrained", retrained, min_models=3)
    eps = neurips_epsilons(u, r, delta, interval_rules=interval_rules)
    points = neurips_example_scores(eps, min(u.shape[0], r.shape[0]))
    f = float(points.mean())
    out = {"forgetting_quality": f, "epsilon_median": float(eps.median())}
    if retain_accuracy is not None and test_accuracy is not None:
        for name, pair in (("retain_accuracy", retain_accuracy), ("test_accuracy", test_accuracy)):
            if len(pair) != 2 or pair[1] <= 0:
                raise ValueError(f"`{name}` must be (unlearned, retrained) with retrained > 0, got {pair!r}.")
        out["score"] = f * (retain_accuracy[0] / retain_accuracy[1]) * (test_accuracy[0] / test_accuracy[1])
    return out


# ------------------------------------------------------------------------------ KLOM
def klom_per_example(
    unlearned: Tensor,
    retrained: Tensor,
    bins: int = 20,
    eps: float = 1e-5,
    clip: float = 100.0,
) -> Tensor:
    """KLOM per example: KL(unlearned ‖ retrained) of the binned margin distributions (nats).

    Georgiev et al., "Attribute-to-Delete: Machine Unlearning via Datamodel Matching" (arXiv
    2410.23232), as in its reference code: margins (the correct-class margin
    z_y - logsumexp_{j≠y} z_j, i.e. φ) clipped to [-clip, clip], ``bins`` equal-width bins over
    the example's combined range, the retrained bin frequencies floored at ``eps`` where the
    unlearned ones are positive and renormalised. Deviation: the largest sample counts in the
    last bin (the reference's ``np.digitize`` drops it).
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"`bins` must be an int >= 1, got {bins!r}.")
    if eps <= 0:
        raise ValueError(f"`eps` must be > 0, got {eps}.")
    u, r = _check_pair("unlearned", unlearned, "retrained", retrained)
    u, r = u.clamp(-clip, clip).T, r.clamp(-clip, clip).T  # (N, K)
    lo = torch.minimum(u.amin(1), r.amin(1))
    hi = torch.maximum(u.amax(1), r.amax(1))
    hi = torch.where(hi > lo, hi, lo + 1.0)
    width = (hi - lo) / bins

    def hist(x: Tensor) -> Tensor:
        idx = torch.floor((x - lo[:, None]) / width[:, None]).long().clamp(0, bins - 1)
        counts = torch.zeros(x.shape[0], bins, dtype=torch.float64, device=x.device)
        counts.scatter_add_(1, idx, torch.ones_like(x))
        return counts / counts.sum(dim=1, keepdim=True)

    p, q = hist(u), hist(r)
    q = torch.where(p > 0, q.clamp_min(eps), q)
    q = q / q.sum(dim=1, keepdim=True)
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(dim=1).clamp_min(0.0)


def klom(
    unlearned: Tensor,
    retrained: Tensor,
    percentiles: Sequence[float] = KLOM_PERCENTILES,
    bins: int = 20,
    eps: float = 1e-5,
) -> dict[str, float]:
    """KLOM percentiles over the examples (``{"p50": ..., "mean": ...}``); ideal: 0 up to sampling noise."""
    values = klom_per_example(unlearned, retrained, bins, eps)
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=torch.float64, device=values.device)
    out = {f"p{p:g}": float(v) for p, v in zip(percentiles, torch.quantile(values, q))}
    out["mean"] = float(values.mean())
    return out


__all__ = [
    "KLOM_PERCENTILES",
    "NEURIPS_DELTA",
    "check_samples",
    "gaussian_fit",
    "klom",
    "klom_per_example",
    "logit_margin",
    "logit_scaled_confidence",
    "neurips_epsilons",
    "neurips_example_scores",
    "neurips_forgetting_score",
    "neurips_max_epsilon",
    "ulira",
    "ulira_scores",
]
