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

The loaders live here too: :func:`load_model_weights` (weights into a given network),
:func:`model_from_checkpoint` (the network a checkpoint records, with its weights) and
:func:`load_unlearned` (either, from a file or a run folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning
from lightning.pytorch import LightningModule
from torch import nn

from lightning_unlearn._version import __version__
from lightning_unlearn.serialization import load_trusted, plain

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


def load_model_weights(model: nn.Module, checkpoint: str | os.PathLike, argument: str = "checkpoint") -> None:
    """Load weights into ``model`` from a Lightning checkpoint, a saved unlearned model or a state dict.

    The file is read with :func:`~lightning_unlearn.serialization.load_trusted`: nothing in it is executed.
    ``argument`` is the name the errors give the file (e.g. ``--unlearned`` for the CLI).

    Raises:
        FileNotFoundError: if the file does not exist.
        IsADirectoryError: if ``checkpoint`` is a directory.
        ValueError: if the file is not a trusted PyTorch checkpoint or belongs to another architecture.
    """
    _apply_weights(model, load_trusted(checkpoint, argument), Path(checkpoint), argument)


def _apply_weights(model: nn.Module, payload: Any, path: Path, argument: str) -> None:
    """Copy the state dict held by ``payload`` (loaded from ``path``) into ``model``."""
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    if not isinstance(state, dict):
        raise ValueError(f"`{argument}` {str(path)!r} holds a {type(state).__name__}, expected a state dict.")
    own = model.state_dict()
    for prefix in ("", "model.", "model.model."):
        candidate = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if candidate.keys() == own.keys():
            mismatched = [k for k in own if own[k].shape != candidate[k].shape]
            if mismatched:
                raise ValueError(
                    f"`{argument}` {str(path)!r} is of another architecture: shapes differ for {mismatched[:5]}"
                    f" (e.g. {tuple(candidate[mismatched[0]].shape)} vs {tuple(own[mismatched[0]].shape)})."
                )
            model.load_state_dict(candidate)
            return
    missing = sorted(set(own) - {k.split("model.", 1)[-1] for k in state})[:5]
    raise ValueError(
        f"`{argument}` {str(path)!r} is of another architecture than {type(model).__name__}: its parameter"
        f" names do not match (e.g. missing {missing})."
    )


_ARCHITECTURE_KEYS = ("model", "num_classes", "input_shape")


def architecture_of(model: nn.Module) -> dict[str, Any] | None:
    """The reference-network description of a :class:`Classifier` built by name, else ``None``."""
    return _architecture_in(getattr(model, "hparams", None))


def _architecture_in(record: Any) -> dict[str, Any] | None:
    """``{"model", "num_classes", "input_shape"}`` from hyper-parameters that describe a network built by name."""
    if not isinstance(record, dict) or not isinstance(record.get("model"), str):
        return None
    if not all(k in record for k in _ARCHITECTURE_KEYS):
        return None
    return {"model": record["model"], "num_classes": int(record["num_classes"]),
            "input_shape": list(record["input_shape"])}


def model_from_checkpoint(checkpoint: str | os.PathLike, argument: str = "checkpoint") -> nn.Module:
    """Build the network a checkpoint records and load its weights (see :func:`_build_from_checkpoint`)."""
    return _build_from_checkpoint(checkpoint, argument)[0]


def _build_from_checkpoint(
    checkpoint: str | os.PathLike, argument: str = "checkpoint"
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the network a checkpoint records and load its weights.

    Works for checkpoints of a :class:`~lightning_unlearn.models.Classifier` built by name
    (e.g. written by ``lightning-unlearn fit``) and for models saved by
    :meth:`UnlearningMethod.save_unlearned <lightning_unlearn.methods.UnlearningMethod.save_unlearned>` from such a
    classifier.

    The file is read once, with :func:`~lightning_unlearn.serialization.load_trusted`.

    Raises:
        FileNotFoundError: if the file does not exist.
        IsADirectoryError: if ``checkpoint`` is a directory.
        ValueError: if the file is not a trusted PyTorch checkpoint or does not record its architecture.
    """
    from lightning_unlearn.models.networks import build_model

    path = Path(checkpoint)
    payload = load_trusted(path, argument)
    arch = None
    if isinstance(payload, dict):
        arch = _architecture_in(payload.get("architecture")) or _architecture_in(payload.get("hyper_parameters"))
    if arch is None:
        raise ValueError(
            f"`{argument}` {str(path)!r} does not record its architecture (it is not a checkpoint of a Classifier"
            " built by name). Pass the network as `model` (CLI: `--method.model lightning_unlearn.models.LeNet5`)."
        )
    model = build_model(arch["model"], arch["num_classes"], tuple(arch["input_shape"]))  # type: ignore[arg-type]
    _apply_weights(model, payload, path, argument)
    return model, arch


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


__all__ = ["MODEL_FILE", "architecture_of", "load_model_weights", "load_unlearned", "model_from_checkpoint", "unlearned_checkpoint"]
