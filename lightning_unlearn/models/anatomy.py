"""Backbone/head anatomy of any classifier.

The head C is the final ``nn.Linear`` whose output gives the model's output (or the module
at a dotted path the user names); the backbone E is everything else. Embeddings are the
head's input, captured with a temporary forward hook, so the user's model class is never
changed.

Without data, the head is the last registered ``nn.Linear`` with ``out_features`` equal to
the number of classes. :meth:`Anatomy.inspect` then runs one batch and reads the head from
the execution: the last ``nn.Linear`` that ran and gives as many values as the model's
output, whatever order the layers were registered in, and whether operations follow it
(e.g. a ReLU after the last linear layer). Methods that compute ``logits = head(embeddings)``
need the head's output to be the model's output; the others work either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


class HeadNotFoundError(ValueError):
    """Raised when a classifier has no usable linear head."""


class Anatomy:
    """The head of ``model`` and helpers around it.

    Args:
        model: the classifier (``nn.Module`` or ``LightningModule``).
        num_classes: size of the label space; the head must produce this many logits.
        head: dotted attribute path of the head (e.g. ``"fc"``, ``"classifier.3"``); by
            default the last registered ``nn.Linear`` with ``out_features == num_classes``.

    Raises:
        HeadNotFoundError: no such layer, the path does not name an ``nn.Linear``, or the
            head's parameters are shared with the backbone (weight tying).

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> anatomy = Anatomy(LeNet5(), num_classes=10)
        >>> anatomy.head_name, anatomy.embedding_dim
        ('fc', 84)
    """

    def __init__(self, model: nn.Module, num_classes: int | None = None, head: str | None = None) -> None:
        self.model = model
        self._num_classes, self._path = num_classes, head
        self.head_name, self.head = self._locate(model, num_classes, head)
        self._check_not_shared()
        self.head_is_output: bool | None = None
        """Whether the head's output is the model's output (``None`` until a forward pass shows it)."""
        self.after_head: tuple[str, ...] = ()
        """The submodules that ran after the head in the inspected forward pass (``"name (Type)"``)."""

    @torch.no_grad()
    def inspect(self, x: Tensor) -> None:
        """Read the head from one forward pass of ``x`` (eval mode, no gradients, the mode restored).

        The head becomes the last ``nn.Linear`` that ran with as many outputs as the model's
        output has values per input (or as ``num_classes`` when given); :attr:`head_is_output`
        and :attr:`after_head` say whether operations follow it.

        Raises:
            HeadNotFoundError: if the model does not return a tensor of logits, the named head
                does not run, or no ``nn.Linear`` of the output's width runs.
        """
        model = self.model
        calls: list[tuple[str, nn.Module, Any]] = []
        leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children()) or isinstance(m, nn.Linear)]
        hooks = [m.register_forward_hook(lambda mod, _i, out, n=n: calls.append((n, mod, out))) for n, m in leaves]
        was_training = model.training
        model.eval()
        try:
            out = model(x)
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        name = type(model).__name__
        if not isinstance(out, Tensor) or out.ndim < 2:
            kind = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, Tensor) else f"a {type(out).__name__}"
            raise HeadNotFoundError(f"{name} returns {kind} for a batch; a classifier must return a (batch, classes) tensor of logits.")
        width = self._num_classes or out.shape[-1]
        linear = [(i, n, m) for i, (n, m, _) in enumerate(calls) if isinstance(m, nn.Linear)]
        if self._path is not None:
            ran = [c for c in linear if c[2] is self.head]
            if not ran:
                raise HeadNotFoundError(f"The head {self._path!r} does not run in {name}'s forward pass.")
        else:
            ran = [c for c in linear if c[2].out_features == width]
            if not ran:
                found = ", ".join(dict.fromkeys(f"{n}(out_features={m.out_features})" for _, n, m in linear)) or "none"
                raise HeadNotFoundError(
                    f"No nn.Linear with {width} outputs runs in {name}'s forward pass (it returns {out.shape[-1]} values"
                    f" per input; the nn.Linear layers that ran: {found}). Pass `head='<dotted.path>'` to name the layer"
                    " that gives the class scores."
                )
        index, head_name, head = ran[-1]
        if head is not self.head:
            self.head_name, self.head = head_name, head
            self._check_not_shared()
        head_out = calls[index][2]
        self.head_is_output = _same_tensor(head_out, out)
        self.after_head = () if self.head_is_output else tuple(
            dict.fromkeys(f"{n} ({type(m).__name__})" for n, m, _ in calls[index + 1 :] if m is not head)
        )

    def describe_tail(self) -> str:
        """What the model does after its head, in words (for error messages)."""
        what = ", ".join(self.after_head) if self.after_head else "operations outside its submodules"
        return f"{type(self.model).__name__} applies {what} after its final linear layer {self.head_name!r}"

    def require_head_output(self, who: str, why: str) -> None:
        """Raise when the model's output is not its head's output (known after :meth:`inspect`).

        ``who`` (e.g. a method's name) needs ``logits = head(embeddings)`` because ``why``.

        Raises:
            HeadNotFoundError: naming ``who``, the reason, and what the model does after its head.
        """
        if self.head_is_output is False:
            raise HeadNotFoundError(
                f"{who} {why}, so it needs the model's output to be the output of its final linear layer, but"
                f" {self.describe_tail()}. Unlearn with a method that trains through the whole model (e.g. SU,"
                " NegGradPlus, UGradSL), or give the model a forward that ends with that layer."
            )

    @staticmethod
    def _locate(model: nn.Module, num_classes: int | None, path: str | None) -> tuple[str, nn.Linear]:
        if path is not None:
            try:
                module = model.get_submodule(path)
            except AttributeError as err:
                raise HeadNotFoundError(f"`head`={path!r} does not name a submodule of {type(model).__name__}: {err}") from err
            if not isinstance(module, nn.Linear):
                raise HeadNotFoundError(f"`head`={path!r} names a {type(module).__name__}, expected an nn.Linear.")
            if num_classes is not None and module.out_features != num_classes:
                raise HeadNotFoundError(f"`head`={path!r} has out_features={module.out_features}, expected num_classes={num_classes}.")
            return path, module
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        matching = [(n, m) for n, m in linears if num_classes is None or m.out_features == num_classes]
        if not matching:
            found = ", ".join(f"{n}(out_features={m.out_features})" for n, m in linears) or "none"
            raise HeadNotFoundError(
                f"No nn.Linear head with out_features={num_classes} found in {type(model).__name__}"
                f" (searched all nn.Linear submodules: {found}). Pass `head='<dotted.path>'` to name the"
                " final linear layer, or give the model a final nn.Linear classifier."
            )
        return matching[-1]

    def _check_not_shared(self) -> None:
        head_ids = {id(p) for p in self.head.parameters()}
        for name, module in self.model.named_modules():
            if name == self.head_name or module is self.head:
                continue
            for pname, param in module.named_parameters(recurse=False):
                if id(param) in head_ids:
                    raise HeadNotFoundError(
                        f"The head {self.head_name!r} shares its parameter with {name}.{pname} (weight tying);"
                        " backbone and head cannot be frozen/unlearned separately. Untie them first."
                    )

    @property
    def embedding_dim(self) -> int:
        return self.head.in_features

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head_ids = {id(p) for p in self.head.parameters()}
        return [p for p in self.model.parameters() if id(p) not in head_ids]

    def backbone_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        head_ids = {id(p) for p in self.head.parameters()}
        return ((n, p) for n, p in self.model.named_parameters() if id(p) not in head_ids)

    @contextmanager
    def capture(self) -> Iterator[dict[str, Tensor]]:
        """Context in which every forward stores the head's input under ``"embedding"``."""
        store: dict[str, Tensor] = {}

        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            store["embedding"] = inputs[0]
            store["head_output"] = output

        handle = self.head.register_forward_hook(hook)
        try:
            yield store
        finally:
            handle.remove()

    def forward_with_embeddings(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, embeddings)`` from one forward pass of the model.

        The logits are the model's output; the embeddings the head's input. Whether the logits
        are ``head(embeddings)`` is recorded in :attr:`head_is_output` when not yet known.

        Raises:
            HeadNotFoundError: if the head did not run.
        """
        with self.capture() as store:
            logits = self.model(x)
        if "embedding" not in store:
            raise HeadNotFoundError(f"The head {self.head_name!r} was not called during the forward pass.")
        if self.head_is_output is None:
            self.head_is_output = _same_tensor(store["head_output"], logits)
        return logits, store["embedding"]

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Embeddings (the head's input) of ``x``, without gradients."""
        return self.forward_with_embeddings(x)[1]


def _same_tensor(a: Any, b: Any) -> bool:
    """``b`` is ``a`` or a view of the same values (e.g. a reshape that keeps the shape)."""
    if a is b:
        return True
    return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and a.stride() == b.stride()
            and a.data_ptr() == b.data_ptr() and a.dtype == b.dtype)


def set_requires_grad(parameters: list[nn.Parameter] | Iterator[nn.Parameter], flag: bool) -> None:
    """Freeze (``False``) or unfreeze (``True``) parameters."""
    for p in parameters:
        p.requires_grad_(flag)


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of ``model`` (1d, 2d, 3d, SyncBatchNorm, lazy ones)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """Put every BatchNorm of ``model`` in eval mode inside the context (running stats untouched)."""
    norms = batchnorm_layers(model)
    modes = [m.training for m in norms]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(norms, modes):
            m.train(mode)
