"""One-call entry points: train a classifier, unlearn with a method by name."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import get_method
from lightning_unlearn.models.classifier import Classifier
from lightning_unlearn.models.networks import ModelName
from lightning_unlearn.request import ServeRequest
from lightning_unlearn.serialization import load_trusted


# Lightning's start-up lines: what hardware exists, advertisements, "fit stopped" notices.
_BANNERS = ("GPU available", "TPU available", "HPU available", "IPU available", "💡 Tip", "`Trainer.fit` stopped")


class _DropBanners(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_BANNERS)


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Leave out Lightning's start-up banners and a deprecation notice Lightning triggers in torch,
    unless ``verbose``; warnings and errors, and the unlearning outcome, are still shown."""
    if verbose:
        yield
        return
    logger, banner_filter = logging.getLogger("lightning.pytorch.utilities.rank_zero"), _DropBanners()
    logger.addFilter(banner_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        logger.removeFilter(banner_filter)


def make_trainer(max_epochs: int, callbacks: list[Callback] | None = None, **trainer_kwargs: Any) -> Trainer:
    """A quiet Trainer for programmatic use (no logger, checkpoints, progress bar or summary by default;
    checkpoints are written by a ``ModelCheckpoint`` among ``callbacks``)."""
    defaults: dict[str, Any] = {
        "accelerator": "auto",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": any(isinstance(cb, ModelCheckpoint) for cb in callbacks or []),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    defaults.update(trainer_kwargs)
    return Trainer(max_epochs=max_epochs, callbacks=callbacks, **defaults)


def train_classifier(
    datamodule: UnlearningDataModule,
    model: nn.Module | ModelName = "lenet5",
    max_epochs: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    callbacks: list[Callback] | None = None,
    verbose: bool = False,
    **trainer_kwargs: Any,
) -> Classifier:
    """Train a :class:`Classifier` on the whole training split (the original model).

    ``verbose=True`` shows Lightning's start-up banners (hidden by default, see :func:`quiet`).
    """
    seed_everything(seed, workers=True, verbose=False)
    classifier = Classifier(model, datamodule.num_classes, datamodule.input_shape, lr=lr)
    trainer_kwargs.setdefault("limit_val_batches", 0)
    with quiet(verbose):
        make_trainer(max_epochs, callbacks, **trainer_kwargs).fit(classifier, datamodule=datamodule)
    return classifier


def create_method(method: str | type[UnlearningMethod], model: nn.Module | LightningModule, **options: Any) -> UnlearningMethod:
    """Instantiate a registered method by name (or class) around ``model``."""
    cls = get_method(method) if isinstance(method, str) else method
    return cls(model=model, **options)


def check_resume_checkpoint(path: str | os.PathLike, argument: str = "ckpt_path") -> Path:
    """``path`` if it is a trusted checkpoint that a fit can resume from (one written during a fit, e.g. by
    ``ModelCheckpoint``: it holds the loops' state), else a one-line error naming ``argument``.

    Raises:
        FileNotFoundError: if the file does not exist.
        IsADirectoryError: if ``path`` is a directory.
        ValueError: if the file is not a trusted PyTorch checkpoint, or holds no training state (e.g. the
            original model's weights or a saved unlearned model).
    """
    payload = load_trusted(path, argument)
    if not isinstance(payload, dict) or not {"loops", "state_dict"} <= payload.keys():
        raise ValueError(
            f"`{argument}` {str(path)!r} holds no training state to resume (a checkpoint written during the run,"
            " e.g. by ModelCheckpoint, has one); the model to unlearn is given as the method's `checkpoint`/`model`."
        )
    return Path(path)


def unlearn(
    model: nn.Module,
    datamodule: UnlearningDataModule,
    method: str | UnlearningMethod = "finetune",
    callbacks: list[Callback] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    verbose: bool = False,
    ckpt_path: str | os.PathLike | None = None,
    **options: Any,
) -> nn.Module:
    """Serve a deletion request in one call and return the unlearned model.

    Args:
        model: the trained classifier (left unchanged).
        datamodule: the data module that holds the deletion request.
        method: a registered method name (see :func:`available_methods`) or a method instance.
        callbacks: Trainer callbacks (stopping rules, evaluators, ...).
        trainer_kwargs: extra Trainer arguments (devices, strategy, precision, ...).
        verbose: also show Lightning's start-up banners (hardware, tips); the outcome line and every
            warning are shown either way.
        ckpt_path: resume an interrupted run from a checkpoint it wrote (e.g. with a
            ``ModelCheckpoint(every_n_train_steps=...)`` among ``callbacks``; pass the same method,
            options, data and callbacks). The run goes on where the checkpoint stood, in the middle
            of an epoch too, and ends with the weights an uninterrupted run ends with.
        **options: the method's arguments (``lr``, ``max_epochs``, ...).

    Returns:
        The unlearned copy of ``model`` (same type as ``model``); its ``unlearning_outcome`` attribute is
        the :class:`~lightning_unlearn.request.UnlearningOutcome` (target, whether reached, steps, wall
        time, accuracies before/after, guard events), also at ``method.outcome``.

    Warns:
        UnlearningTargetWarning: when the request's target is not reached (an error with ``strict=True``).

    Example:
        >>> from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
        >>> dm = UnlearningDataModule("digits", forget=ClassForget(0))
        >>> original = train_classifier(dm, max_epochs=1)
        >>> unlearned = unlearn(original, dm, method="GradientAscent")
        >>> unlearned.unlearning_outcome.reached
        True
    """
    if ckpt_path is not None:
        ckpt_path = check_resume_checkpoint(ckpt_path)
    if isinstance(method, UnlearningMethod):
        if options:
            raise ValueError(f"Pass method options either to the method instance or as keywords, not both: {sorted(options)}.")
        instance = method
    else:
        instance = create_method(method, model, **options)
    seed_everything(instance.hparams.get("seed", 0), workers=True, verbose=False)
    trainer_kwargs = dict(trainer_kwargs or {})
    trainer_kwargs.setdefault("limit_val_batches", 0 if not callbacks else 1.0)
    request = next((cb for cb in callbacks or [] if isinstance(cb, ServeRequest)), None)
    budgeted = request.budget_applies() if request is not None else instance.runs_to_budget()
    with quiet(verbose):
        trainer = make_trainer(-1 if budgeted else max(instance.hparams.max_epochs, 1), callbacks, **trainer_kwargs)
        trainer.fit(instance, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    model = instance.unlearned_model
    model.unlearning_outcome = instance.outcome  # type: ignore[assignment]
    return model
