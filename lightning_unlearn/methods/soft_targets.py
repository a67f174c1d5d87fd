"""Target maths shared by the soft-label methods (SU, SULI, PRU, δ-Targeted^λ) and their target cache.

The functions are pure tensor maths, testable without a Trainer:

* :func:`spa_targets` — Selective Probability Adjustment (SULI paper): the forgotten
  label gets probability ε, the rest of the mass is spread over the other classes in
  proportion to the model's own probabilities.
* :func:`redistribute_probabilities` — PRU's probability redistribution (PRU paper, Eq. 1-2):
  the forgotten label's probability is handed to the other classes in proportion; this is
  exactly SPA with ε = 0.
* :func:`delta_targeted_labels` — δ-Targeted pseudo labels (δ-Targeted paper, Algorithm 1) with the
  per-sample uniform draw keyed by dataset index.

:class:`SoftTargetMethod` is the base of the four methods: it holds targets computed ONCE
(no grad, over the whole relevant forget data on every process, so they are identical for
every world size) keyed by dataset index, looks them up per batch with ``batch[2]`` and
keeps them in the checkpoint so a resumed run continues with the same targets.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.seeding import index_uniform
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.outputs import SplitOutputs, predict


def _masked_softmax(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax over all classes except ``labels`` (that class gets exactly 0).

    Equal to ``P(y) / Σ_{y' ≠ y_f} P(y')`` but computed from the logits, so it stays
    defined when the model puts (numerically) all its mass on the forgotten label.
    """
    z = logits.float().clone()
    z.scatter_(1, labels.long().view(-1, 1), float("-inf"))
    return z.softmax(dim=1)


def spa_targets(logits: Tensor, labels: Tensor, epsilon: float = 0.0) -> Tensor:
    """Selective Probability Adjustment (SULI, Eq. 3): ``P'(y_f) = ε``, ``P'(y) = P(y)(1-ε)/S``.

    Args:
        logits: ``(N, K)`` logits of the model the targets are taken from.
        labels: ``(N,)`` the label to forget of every sample (its ground-truth label).
        epsilon: probability left on the forgotten label, in ``[0, 1)``.

    Returns:
        ``(N, K)`` float32 target distributions (rows sum to 1).

    Raises:
        ValueError: if ``epsilon`` is outside ``[0, 1)`` or the shapes do not match.

    Example:
        >>> t = spa_targets(torch.tensor([[2.0, 1.0, 1.0]]), torch.tensor([0]), epsilon=0.1)
        >>> [round(v, 3) for v in t[0].tolist()]
        [0.1, 0.45, 0.45]
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"`epsilon` must be in [0, 1), got {epsilon}.")
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"Expected logits (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}.")
    targets = _masked_softmax(logits, labels) * (1.0 - epsilon)
    if epsilon > 0:
        targets.scatter_(1, labels.long().view(-1, 1), epsilon)
    return targets


def redistribute_probabilities(logits: Tensor, labels: Tensor) -> Tensor:
    """PRU's redistribution (Eq. 1-2): ``p̃_k = p_k + p_f·p_k/Σ_{j≠f} p_j``, ``p̃_f = 0``.

    Since ``p_k + p_f p_k / S = p_k (S + p_f) / S = p_k / S``, this is SPA with ε = 0.

    Example:
        >>> t = redistribute_probabilities(torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([0]))
        >>> int(t.argmax()), float(t[0, 0])
        (1, 0.0)
    """
    return spa_targets(logits, labels, 0.0)


def predictive_entropy(logits: Tensor) -> Tensor:
    """Entropy ``H(p) = -Σ p log p`` of ``softmax(logits)`` per row (nats)."""
    log_p = logits.float().log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def delta_targeted_labels(logits: Tensor, labels: Tensor, indices: Tensor, delta: float, seed: int, stream: int = 0) -> Tensor:
    """δ-Targeted pseudo labels (δ-Targeted paper, Algorithm 1).

    ``ŷ`` / ``ŷ'`` are the most / second most confident classes of the original model.
    With probability δ the label ``y`` is kept; otherwise ``y' = ŷ'`` if ``ŷ = y`` else ``ŷ``.
    The uniform draw α is a function of ``(seed, stream, dataset index)`` only.

    Raises:
        ValueError: if ``delta`` is outside ``[0, 1]``.

    Example:
        >>> logits = torch.tensor([[3.0, 2.0, 0.0], [0.0, 3.0, 2.0]])
        >>> delta_targeted_labels(logits, torch.tensor([0, 2]), torch.tensor([5, 9]), delta=0.0, seed=0).tolist()
        [1, 1]
    """
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"`delta` must be in [0, 1], got {delta}.")
    top2 = logits.float().topk(2, dim=1).indices.cpu()
    labels = labels.long().cpu()
    alpha = index_uniform(indices.cpu(), seed, stream)
    noisy = torch.where(top2[:, 0] == labels, top2[:, 1], top2[:, 0])
    return torch.where(alpha < delta, labels, noisy)


class IndexedTargets:
    """Per-sample targets keyed by dataset index (looked up with a batch's ``batch[2]``).

    Args:
        keys: ``(N,)`` dataset indices (any order, unique).
        values: ``(N, ...)`` the target of each key.

    Raises:
        ValueError: if the keys are not unique or the lengths differ.
    """

    def __init__(self, keys: Tensor, values: Tensor) -> None:
        keys = torch.as_tensor(keys, dtype=torch.int64)
        if keys.ndim != 1 or values.shape[0] != keys.numel():
            raise ValueError(f"Expected (N,) keys and (N, ...) values, got {tuple(keys.shape)} and {tuple(values.shape)}.")
        order = keys.argsort()
        self.keys, self.values = keys[order], values[order.to(values.device)]
        if self.keys.numel() > 1 and bool((self.keys[1:] == self.keys[:-1]).any()):
            raise ValueError("`keys` must be unique dataset indices.")

    def __len__(self) -> int:
        return self.keys.numel()

    def to(self, device: torch.device | str) -> IndexedTargets:
        self.keys, self.values = self.keys.to(device), self.values.to(device)
        return self

    def lookup(self, indices: Tensor) -> Tensor:
        """The targets of ``indices`` (raises ``KeyError`` for an index without a target)."""
        indices = indices.to(self.keys.device, torch.int64)
        pos = torch.searchsorted(self.keys, indices).clamp_max(len(self) - 1)
        found = self.keys[pos] == indices
        if not bool(found.all()):
            missing = indices[~found][:5].tolist()
            raise KeyError(f"No cached target for dataset indices {missing}: the batch is not from the cached forget data.")
        return self.values[pos]

    def state_dict(self) -> dict[str, Tensor]:
        return {"keys": self.keys.cpu(), "values": self.values.cpu()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> IndexedTargets:
        return cls(state["keys"], state["values"])


class SoftTargetMethod(UnlearningMethod):
    """Base of methods trained on targets cached once from a model's outputs on D_f.

    Subclasses fill :attr:`targets` (an :class:`IndexedTargets`) in :meth:`compute_targets`,
    called once at fit start (inside the timed region); the targets travel in the checkpoint
    under ``"soft_targets"`` and are not recomputed when a run resumes from it.
    """

    targets: IndexedTargets | None = None
    _targets_restored: bool = False

    def compute_targets(self) -> None:
        """Fill :attr:`targets` (override). Called once per fit, before the first step."""
        raise NotImplementedError

    def prepare_unlearning(self) -> None:
        if not self._targets_restored:
            self.compute_targets()
        self._targets_restored = False

    # ----------------------------------------------------------------- helpers
    def model_outputs(self, dataset: Dataset, batch_size: int) -> SplitOutputs:
        """One no-grad eval-mode pass of the CURRENT model over ``dataset`` (every process does the whole set);
        :meth:`split_outputs` passes a whole split of the data module."""
        return predict(self.model, DataLoader(dataset, batch_size=batch_size))

    def set_targets(self, keys: Tensor, values: Tensor) -> None:
        self.targets = IndexedTargets(keys, values).to(self.device)

    def lookup_targets(self, batch: Any) -> Tensor:
        """The cached targets of a batch ``(x, y, index)``."""
        if self.targets is None:
            raise RuntimeError(f"{type(self).__name__}: targets were not computed; fit the method with a Trainer.")
        if not isinstance(batch, (list, tuple)) or len(batch) < 3:
            raise TypeError(f"{type(self).__name__} needs batches (x, y, index) to look up cached targets by dataset index.")
        if self.targets.keys.device != self.device:
            self.targets.to(self.device)
        return self.targets.lookup(batch[2])

    # ------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.targets is not None:
            checkpoint["soft_targets"] = self.targets.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "soft_targets" in checkpoint:
            self.targets = IndexedTargets.from_state_dict(checkpoint["soft_targets"])
            self._targets_restored = True


def soft_kl(logits: Tensor, targets: Tensor) -> Tensor:
    """``KL(targets ‖ softmax(logits))`` averaged over the batch (``batchmean``), in float32."""
    return torch.nn.functional.kl_div(logits.float().log_softmax(dim=1), targets.float(), reduction="batchmean")
