"""Membership-inference metrics: MIA-efficacy (confidence SVC) and the loss MIA (logistic regression).

Both attacks are scikit-learn classifiers fitted once, on the gathered data, with a fixed seed;
scikit-learn is imported when an attack is fitted, not with the package (it takes longer to import
than the rest of lightning-unlearn).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lightning_unlearn.data.seeding import index_uniform
from lightning_unlearn.metrics.functional._checks import check_logits


def _confidence(logits: Tensor, target: Tensor) -> Tensor:
    """p_y: the softmax probability of the true label (float64)."""
    return logits.double().softmax(dim=1).gather(1, target.long().view(-1, 1)).squeeze(1)


def _mia_efficacy_update(logits: Tensor, target: Tensor, name: str = "logits") -> Tensor:
    check_logits(name, logits, target)
    return _confidence(logits, target)


def _mia_efficacy_compute(retain_conf: Tensor, test_conf: Tensor, forget_conf: Tensor) -> Tensor:
    for name, value in (("retain", retain_conf), ("test", test_conf), ("forget", forget_conf)):
        if value.numel() == 0:
            raise ValueError(f"MIA-efficacy needs a non-empty {name} split, got 0 samples.")
    from sklearn.svm import SVC

    members = retain_conf[: test_conf.numel()]
    x = torch.cat([members, test_conf]).cpu().numpy().reshape(-1, 1)
    y = np.concatenate([np.ones(members.numel()), np.zeros(test_conf.numel())])
    attack = SVC(C=3, gamma="auto", kernel="rbf")
    attack.fit(x, y)
    threshold = _monotone_threshold(x.ravel(), attack.predict(x))
    predicted_member = forget_conf.cpu().numpy() >= threshold
    return torch.tensor(1.0 - predicted_member.mean(), dtype=torch.float64)


def _monotone_threshold(confidence: np.ndarray, member: np.ndarray) -> float:
    """The threshold ``τ`` whose rule "member iff p_y ≥ τ" disagrees least with ``member`` (the SVC's labels).

    The RBF attacker is a free function of p_y: fitted where members and non-members both sit near
    p_y = 1, it can label the low confidences it never saw as members (an inverted attacker, which
    scores a model that forgot as one that did not). Its labels projected on the monotone rules keep
    the attack's direction fixed by construction — a lower confidence is never more of a member — and
    equal the SVC's own decision wherever that is already monotone. Ties go to the highest ``τ``.
    """
    order = np.argsort(confidence, kind="stable")
    p, m = confidence[order], member[order].astype(np.int64)
    # cut k: the k lowest are non-members; disagreements = members below the cut + non-members above it
    below_members = np.concatenate([[0], np.cumsum(m)])
    above_non_members = np.concatenate([np.cumsum((1 - m)[::-1])[::-1], [0]])
    cost = below_members + above_non_members
    cuts = np.flatnonzero(np.concatenate([[True], p[1:] != p[:-1], [True]]))  # only between distinct values
    k = int(cuts[np.flatnonzero(cost[cuts] == cost[cuts].min())[-1]])
    return float(p[k]) if k < p.size else float("inf")


def mia_efficacy(
    retain_logits: Tensor,
    retain_target: Tensor,
    test_logits: Tensor,
    test_target: Tensor,
    forget_logits: Tensor,
    forget_target: Tensor,
) -> Tensor:
    """MIA-efficacy: the fraction of D_f a confidence attack predicts as non-member.

    SalUn / Jia et al. (2023) convention: the attacker is an RBF ``SVC(C=3, gamma="auto")``
    fitted on p_y of the first |D_t| retain samples (members, label 1) and of the test samples
    (non-members, label 0); the score is the fraction of D_f it predicts as non-member. Higher
    means more forgetting; compare with the retrained model's value.

    The SVC's decision is read as a threshold on p_y: its labels on the samples it was fitted on,
    projected on the rules "member iff p_y ≥ τ". The attack's direction is so fixed by
    construction: an RBF attacker fitted where members and non-members both sit near p_y = 1 can
    otherwise call the low confidences it never saw "member", and score a model that forgot D_f
    as one that did not (MIA-efficacy 0 at forget accuracy 0). Where the SVC is already monotone
    in p_y the two agree.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> r, t, f = (torch.randn(50, 3, generator=g) for _ in range(3))
        >>> y = torch.zeros(50, dtype=torch.long)
        >>> float(mia_efficacy(r * 5, y, t, y, f, y)) >= 0.0
        True
    """
    return _mia_efficacy_compute(
        _mia_efficacy_update(retain_logits, retain_target, "retain_logits"),
        _mia_efficacy_update(test_logits, test_target, "test_logits"),
        _mia_efficacy_update(forget_logits, forget_target, "forget_logits"),
    )


def _loss_mia_update(logits: Tensor, target: Tensor, name: str = "logits") -> Tensor:
    """Per-sample cross-entropy (float64)."""
    check_logits(name, logits, target)
    return torch.nn.functional.cross_entropy(logits.double(), target.long(), reduction="none")


def _balanced_subsample(values: Tensor, indices: Tensor, size: int, seed: int, stream: int) -> Tensor:
    """``size`` of ``values`` chosen by a seeded draw keyed by dataset index (order-independent)."""
    if values.numel() <= size:
        return values
    keys = index_uniform(indices.cpu(), seed, stream)
    return values[torch.argsort(keys)[:size].to(values.device)]


def _loss_mia_compute(
    forget_loss: Tensor,
    test_loss: Tensor,
    forget_indices: Tensor | None = None,
    test_indices: Tensor | None = None,
    n_splits: int = 10,
    test_size: float = 0.1,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    if forget_loss.numel() == 0 or test_loss.numel() == 0:
        raise ValueError(
            f"The loss MIA needs non-empty forget and test losses, got {forget_loss.numel()} and {test_loss.numel()}."
        )
    size = min(forget_loss.numel(), test_loss.numel())
    if size < 2 * n_splits:
        raise ValueError(
            f"The loss MIA needs at least {2 * n_splits} samples in both D_f and D_t (n_splits={n_splits}), got {size}."
        )
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    f_idx = forget_indices if forget_indices is not None else torch.arange(forget_loss.numel())
    t_idx = test_indices if test_indices is not None else torch.arange(test_loss.numel())
    forget = _balanced_subsample(forget_loss, f_idx, size, seed, stream=1)
    test = _balanced_subsample(test_loss, t_idx, size, seed, stream=2)
    x = torch.cat([forget, test]).cpu().numpy().reshape(-1, 1)
    y = np.concatenate([np.ones(size), np.zeros(size)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    return torch.tensor(scores.mean(), dtype=torch.float64), torch.tensor(scores.std(), dtype=torch.float64)


def loss_mia(
    forget_logits: Tensor,
    forget_target: Tensor,
    test_logits: Tensor,
    test_target: Tensor,
    forget_indices: Tensor | None = None,
    test_indices: Tensor | None = None,
    n_splits: int = 10,
    test_size: float = 0.1,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Loss-based membership inference: accuracy (mean, std) of telling D_f from D_t by the loss.

    SCRUB (Kurmanji et al. 2023) / NeurIPS-2023 unlearning kit convention: per-sample
    cross-entropy on D_f (label 1) and D_t (label 0; for class-wise forgetting pass D_tf),
    the larger set subsampled to the size of the smaller by a seeded draw keyed by dataset index
    (``*_indices``; positions when omitted), a ``LogisticRegression`` scored with
    ``StratifiedShuffleSplit(n_splits, test_size, random_state=seed)``. Ideal: about 0.5.
    """
    return _loss_mia_compute(
        _loss_mia_update(forget_logits, forget_target, "forget_logits"),
        _loss_mia_update(test_logits, test_target, "test_logits"),
        forget_indices,
        test_indices,
        n_splits,
        test_size,
        seed,
    )
