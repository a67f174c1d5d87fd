"""Checks of a method's arguments and inputs, each failing with a one-line error that names what it checks."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lightning_unlearn.passes import device_of, eval_mode


def check_model_inputs(model: nn.Module, input_shape: Any, num_classes: int | None, what: str = "The model") -> None:
    """Before any work: ``model`` takes inputs of ``input_shape`` and gives at least one logit per class.

    One forward pass of two zero inputs in eval mode (the model's mode is restored).

    Raises:
        ValueError: naming both shapes, when the forward pass fails or gives too few logits.
    """
    try:
        with eval_mode(model), torch.no_grad():
            logits = model(torch.zeros(2, *input_shape, device=device_of(model)))
    except RuntimeError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"{what} does not take the data's inputs: a batch of shape (2, {', '.join(map(str, input_shape))}) from the"
            f" data module fails in its forward pass ({message}). The checkpoint and the data must describe the same"
            " inputs (channels, size)."
        ) from None
    if not isinstance(logits, Tensor) or logits.ndim != 2 or (num_classes is not None and logits.shape[1] < num_classes):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"{what} gives outputs of shape {shape} for 2 inputs, but the data module has {num_classes}"
            f" classes: a classifier must give at least one logit per class, shape (2, >= {num_classes})."
        )


def non_finite_inputs(batch: Any) -> list[int]:
    """Dataset indices (or batch positions) of the samples of ``batch`` whose inputs hold NaN or infinity."""
    if isinstance(batch, dict):
        return [i for part in batch.values() for i in non_finite_inputs(part)]
    if not isinstance(batch, (list, tuple)) or not batch or not isinstance(batch[0], Tensor):
        return []
    x = batch[0]
    if not x.is_floating_point():
        return []
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
    if not bool(bad.any()):
        return []
    ids = batch[2] if len(batch) >= 3 and isinstance(batch[2], Tensor) else torch.arange(len(x), device=x.device)
    return [int(i) for i in ids[bad].tolist()]


def check_number(name: str, value: Any, expected: str, valid: Any) -> None:
    """A finite real number for which ``valid`` holds, or a one-line error naming the argument."""
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not finite or not valid(value):
        raise ValueError(f"`{name}` must be a finite number {expected}, got {value!r}.")


def check_integer(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    """An integer >= ``low`` (a bool or float is refused, not coerced), or a one-line error naming the argument."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be {'None or ' if allow_none else ''}an integer >= {low}, got {value!r}.")
