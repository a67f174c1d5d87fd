"""Randomness keyed by dataset index.

Every stochastic per-sample choice in lightning-unlearn (random labels, label-noise draws,
subsampling) is a pure function of ``(seed, stream, dataset index)``. The result therefore
does not depend on batch order, batch size, the number of processes or the sampler, which
is what makes a DDP run reproduce a single-process run exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _to_signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


_GOLDEN = _to_signed(0x9E3779B97F4A7C15)
_MIX1 = _to_signed(0xBF58476D1CE4E5B9)
_MIX2 = _to_signed(0x94D049BB133111EB)


def _srl(x: Tensor, shift: int) -> Tensor:
    """Logical right shift of int64 tensors (torch's ``>>`` is arithmetic)."""
    return (x >> shift) & ((1 << (64 - shift)) - 1)


def _splitmix64(x: Tensor) -> Tensor:
    x = x + _GOLDEN
    x = (x ^ _srl(x, 30)) * _MIX1
    x = (x ^ _srl(x, 27)) * _MIX2
    return x ^ _srl(x, 31)


def index_hash(indices: Tensor, seed: int, stream: int = 0) -> Tensor:
    """Return 64-bit pseudo-random integers (as int64) that depend only on the arguments."""
    idx = torch.as_tensor(indices, dtype=torch.int64).cpu()
    key = _splitmix64(torch.tensor(_to_signed(seed * 1_000_003 + stream), dtype=torch.int64))
    return _splitmix64(idx ^ key)


def index_uniform(indices: Tensor, seed: int, stream: int = 0) -> Tensor:
    """Uniform draws in ``[0, 1)`` (float64), one per dataset index.

    Example:
        >>> u = index_uniform(torch.tensor([3, 7, 3]), seed=0)
        >>> bool(u[0] == u[2]) and bool((u >= 0).all() and (u < 1).all())
        True
    """
    bits = _srl(index_hash(indices, seed, stream), 11)  # 53 random bits
    return bits.to(torch.float64) / float(1 << 53)


def index_randint(indices: Tensor, high: int, seed: int, stream: int = 0) -> Tensor:
    """Integers uniform in ``[0, high)``, one per dataset index."""
    if high < 1:
        raise ValueError(f"`high` must be >= 1, got {high}.")
    return torch.floor(index_uniform(indices, seed, stream) * high).to(torch.int64)


def index_random_other_label(indices: Tensor, labels: Tensor, num_classes: int, seed: int, stream: int = 0) -> Tensor:
    """A label drawn uniformly among the ``num_classes - 1`` classes other than ``labels``."""
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be >= 2 to draw another label, got {num_classes}.")
    offset = 1 + index_randint(indices, num_classes - 1, seed, stream).to(labels.device)
    return (labels.long() + offset) % num_classes
