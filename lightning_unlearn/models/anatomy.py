"""Backbone/head anatomy of any classifier.

The head C is the final ``nn.Linear`` whose ``out_features`` equals the number of
classes (or the module at a dotted path the user names); the backbone E is everything
else. Embeddings are the head's input, captured with a temporary forward hook, so the
user's model class is never changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
        self.head_name, self.head = self._locate(model, num_classes, head)
        self._check_not_shared()

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

        Raises:
            HeadNotFoundError: if the head did not run, or its output is not the model's output.
        """
        with self.capture() as store:
            logits = self.model(x)
        if "embedding" not in store:
            raise HeadNotFoundError(f"The head {self.head_name!r} was not called during the forward pass.")
        if store["head_output"] is not logits:
            raise HeadNotFoundError(
                f"The head {self.head_name!r} is not the last operation of the model (its output differs from the"
                " model's output), so the logits are not head(embeddings). Point `head` at the final linear layer."
            )
        return logits, store["embedding"]

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Embeddings (the head's input) of ``x``, without gradients."""
        return self.forward_with_embeddings(x)[1]


def set_requires_grad(parameters: list[nn.Parameter] | Iterator[nn.Parameter], flag: bool) -> None:
    """Freeze (``False``) or unfreeze (``True``) parameters."""
    for p in parameters:
        p.requires_grad_(flag)


@contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """Put every BatchNorm of ``model`` in eval mode inside the context (running stats untouched)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(norms, modes):
            m.train(mode)
