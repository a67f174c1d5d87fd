"""Unlearned models as Lightning checkpoints, and the loader for any file the package writes.

:meth:`UnlearningMethod.save_unlearned <lightning_unlearn.methods.UnlearningMethod.save_unlearned>`
writes the unlearned classifier in the layout of a Lightning checkpoint, so that it loads with
Lightning's own ``load_from_checkpoint`` (with ``weights_only=True``: tensors and plain values only):

- ``pytorch-lightning_version``, ``state_dict``, ``hyper_parameters``: what
  :meth:`~lightning.pytorch.LightningModule.load_from_checkpoint` reads. When the original was a
  LightningModule (e.g. the user's ``LitModel``), they are its state dict and hyper-parameters:
  ``LitModel.load_from_checkpoint(path)`` returns the unlearned model. When the network was built
  by name (a :class:`~lightning_unlearn.models.Classifier` checkpoint written by
  ``lightning-unlearn fit``), the state dict is prefixed as the Classifier expects and the
  hyper-parameters are the architecture: ``Classifier.load_from_checkpoint(path)`` works. For a plain
  ``nn.Module`` they are its state dict and no hyper-parameters: load it with :func:`load_unlearned`.
- the package's own fields: ``method`` (the method's name), ``runtime_s`` (wall time of the
  request), ``method_hparams`` (the method's options), ``architecture`` (``{"model",
  "num_classes", "input_shape"}`` of a network built by name, else ``None``) and
  ``lightning_unlearn_version``.

Files of earlier versions (``state_dict``, ``method``, ``runtime_s``, ``hparams``,
``architecture``) are still read by every loader of the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning
from lightning.pytorch import LightningModule
from torch import nn

from lightning_unlearn._version import __version__
from lightning_unlearn.serialization import plain

MODEL_FILE = "model.pt"
"""The unlearned model's file name in a run folder written by ``lightning-unlearn unlearn``."""


def unlearned_checkpoint(model: nn.Module, architecture: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The Lightning checkpoint of an unlearned classifier (see the module's documentation).

    Args:
        model: the unlearned classifier (a LightningModule, or a network).
        architecture: ``{"model", "num_classes", "input_shape"}`` when the network was built by name
            (recorded; a bare network's state dict is then written for a :class:`~lightning_unlearn.models.Classifier`).
        **fields: the package's own fields (``method``, ``runtime_s``, ...), kept under their own keys.
    """
    if isinstance(model, LightningModule):
        state, hparams = model.state_dict(), plain(dict(model.hparams))
    elif architecture is not None:  # a bare network built by name: the Classifier holds it as `self.model`
        state, hparams = {f"model.{k}": v for k, v in model.state_dict().items()}, plain(dict(architecture))
    else:
        state, hparams = model.state_dict(), {}
    checkpoint: dict[str, Any] = {
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": state,
        "hyper_parameters": hparams,
    }
    hparams_name = getattr(model, "_hparams_name", None) if isinstance(model, LightningModule) else None
    if isinstance(hparams_name, str):
        checkpoint["hparams_name"] = hparams_name
    checkpoint.update(plain(fields))
    checkpoint["architecture"] = plain(architecture)
    checkpoint["lightning_unlearn_version"] = __version__
    return checkpoint


def load_unlearned(path: str | os.PathLike, model: nn.Module | None = None, argument: str = "path") -> nn.Module:
    """A classifier from a file the package writes, in eval mode.

    Reads an unlearned model written by ``unlearn`` / :meth:`UnlearningMethod.save_unlearned
    <lightning_unlearn.methods.UnlearningMethod.save_unlearned>` (the file or its run folder), a
    Classifier checkpoint written by ``fit``, a Trainer checkpoint of a method, or a state dict.
    Without ``model``, the file must record its architecture (a network built by name) and the
    network is built from it; with ``model``, the weights are loaded into ``model`` (which is returned).

    The file is read with :func:`~lightning_unlearn.serialization.load_trusted`: nothing in it is
    executed. ``argument`` is the name the errors give the file (e.g. ``--unlearned``).

    To get the user's own LightningModule back, use its ``load_from_checkpoint`` instead
    (``LitModel.load_from_checkpoint("runs/su/model.pt")``).

    Raises:
        FileNotFoundError: if the file does not exist, or a folder holds no ``model.pt``.
        ValueError: if the file is not a trusted PyTorch checkpoint, if it does not record its
            architecture and no ``model`` is given, or if it belongs to another architecture than ``model``.

    Example:
        >>> from lightning_unlearn import LeNet5, load_unlearned
        >>> net = load_unlearned("runs/su", model=LeNet5(10, 1, 28))  # doctest: +SKIP
    """
    from lightning_unlearn.methods.base import load_model_weights, model_from_checkpoint

    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).exists():
            raise FileNotFoundError(
                f"`{argument}` {str(path)!r} is a directory without {MODEL_FILE}: expected a run folder written by"
                " `lightning-unlearn unlearn` or a checkpoint file."
            )
        path = path / MODEL_FILE
    if model is None:
        return model_from_checkpoint(path, argument).eval()
    load_model_weights(model, path, argument)
    return model.eval()


__all__ = ["MODEL_FILE", "load_unlearned", "unlearned_checkpoint"]
