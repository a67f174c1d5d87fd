"""Weight-space metrics: Prototype Similarity Score and parameter change."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _prototype_similarity_update(weight: Tensor, reference_weight: Tensor) -> Tensor:
    """Per-class cosine similarity of the head rows (float64, shape (K,))."""
    for name, value in (("weight", weight), ("reference_weight", reference_weight)):
        if not isinstance(value, Tensor) or value.ndim != 2:
            raise ValueError(f"`{name}` must be a head weight of shape (K, E), got {getattr(value, 'shape', type(value))}.")
    if weight.shape != reference_weight.shape:
        raise ValueError(
            f"`weight` has shape {tuple(weight.shape)} but `reference_weight` has {tuple(reference_weight.shape)}:"
            " the heads must have the same number of classes and embedding size."
        )
    if weight.device != reference_weight.device:
        raise ValueError(f"`weight` is on {weight.device} but `reference_weight` is on {reference_weight.device}.")
    return torch.nn.functional.cosine_similarity(weight.detach().double(), reference_weight.detach().double(), dim=1, eps=1e-12)


def prototype_similarity(weight: Tensor, reference_weight: Tensor) -> Tensor:
    """Prototype Similarity Score (Prototype Surgery (Liu et al., CCS 2025, Eq. 16), one value per class.

    ``PSC_k = v_u,k · v_r,k / (‖v_u,k‖ ‖v_r,k‖)`` with ``v_k`` row k (the class-k prototype) of the
    final linear layer of the unlearned and of the reference (retrained) model.

    Example:
        >>> import torch
        >>> w = torch.eye(3)
        >>> prototype_similarity(w, w).tolist()
        [1.0, 1.0, 1.0]
    """
    return _prototype_similarity_update(weight, reference_weight)


def _named_parameter_pairs(model: nn.Module, original: nn.Module) -> list[tuple[str, Tensor, Tensor]]:
    own = dict(model.named_parameters())
    base = dict(original.named_parameters())
    if own.keys() != base.keys():
        missing = sorted(set(own) ^ set(base))[:5]
        raise ValueError(f"`model` and `original` have different parameters (e.g. {missing}): not the same architecture.")
    pairs = []
    for name, value in own.items():
        if value.shape != base[name].shape:
            raise ValueError(f"Parameter {name!r} has shape {tuple(value.shape)} in `model` but {tuple(base[name].shape)} in `original`.")
        if value.device != base[name].device:
            raise ValueError(f"Parameter {name!r} is on {value.device} in `model` but on {base[name].device} in `original`.")
        pairs.append((name, value.detach().double(), base[name].detach().double()))
    return pairs


def parameter_change(model: nn.Module, original: nn.Module, head: str | None = None) -> dict[str, object]:
    """How far unlearning moved the weights (per-layer relative change from PRU, Zhang et al., ACML 2024, Eq. 6).

    Returns a dict with ``l1`` (‖θ_u − θ_o‖₁ over all parameters), ``l1_head`` (the same over the
    head, the final linear layer, found by :class:`~lightning_unlearn.models.Anatomy` or named by
    ``head``) and ``relative`` (parameter name → ‖δ_l‖₂ / ‖θ_o,l‖₂).

    Raises:
        ValueError: if the two models differ in architecture or device.
    """
    from lightning_unlearn.models.anatomy import Anatomy

    pairs = _named_parameter_pairs(model, original)
    head_name = Anatomy(model, head=head).head_name
    prefix = f"{head_name}." if head_name else ""
    l1 = sum(((u - o).abs().sum() for _, u, o in pairs), torch.zeros((), dtype=torch.float64))
    l1_head = sum(((u - o).abs().sum() for n, u, o in pairs if n.startswith(prefix)), torch.zeros((), dtype=torch.float64))
    relative = {n: float((u - o).norm() / o.norm().clamp_min(1e-12)) for n, u, o in pairs}
    return {"l1": float(l1), "l1_head": float(l1_head), "relative": relative}
