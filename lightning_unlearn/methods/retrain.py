"""Retrain: train a freshly initialised copy of the architecture on D_r (the gold standard)."""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.models.classifier import split_batch

Recipe = Literal["auto", "model", "cross_entropy"]


def _own_recipe(model: nn.Module) -> bool:
    """Whether ``model`` is a LightningModule with its own ``training_step`` and ``configure_optimizers``."""
    return isinstance(model, LightningModule) and all(
        getattr(type(model), hook) is not getattr(LightningModule, hook) for hook in ("training_step", "configure_optimizers")
    )


def reset_parameters(model: nn.Module, seed: int) -> None:
    """Re-initialise every submodule that defines ``reset_parameters`` (seeded)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


@register_method("Retrain")
class Retrain(UnlearningMethod):
    """Retrain from scratch on the retain set: the reference every method is measured against.

    The classifier's architecture is kept and every layer is re-initialised (seeded), then
    trained on D_r. Exact but slow: it costs a full training run.

    The recommended reference is the user's own training: when the classifier is a
    LightningModule with its own ``training_step`` and ``configure_optimizers``, a fresh
    initialisation of it is trained with them (``recipe="model"``, the default ``"auto"``
    picks it), for ``max_epochs`` passes over D_r with the data module's batch size; set
    ``max_epochs`` to the original training's. Its ``training_step`` receives ``(x, y)``
    batches. Otherwise it is trained with cross-entropy and the ``optimizer``/``lr`` given here
    (``recipe="cross_entropy"``).

    Args:
        model: the trained classifier (only its architecture and, for ``recipe="model"``, its
            training code are used).
        lr: learning rate of the cross-entropy recipe.
        max_epochs: training epochs (match the original training).
        recipe: ``"auto"``, ``"model"`` or ``"cross_entropy"`` (see above).
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Raises:
        ValueError: for ``recipe="model"`` with a model that has no training code of its own,
            or one that optimises manually.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = Retrain(LeNet5(), max_epochs=10)
        >>> method.recipe
        'cross_entropy'
    """

    data_need = "retain"
    paper = "Retraining from scratch on the retain set (the exact-unlearning reference of every method paper)."

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        lr: float = 1e-3,
        max_epochs: int = 10,
        seed: int = 0,
        target: float | Literal["auto"] | None = None,
        guard: float | None = None,
        recipe: Recipe = "auto",
        **kwargs: Any,
    ) -> None:
        # The reference trains its whole budget: its "before" is a fresh network, so neither a target nor a
        # guard measured on it means anything (a random network already "forgets" every class).
        super().__init__(model, lr=lr, max_epochs=max_epochs, seed=seed, target=target, guard=guard, **kwargs)
        if self.hparams.freeze_batchnorm:
            raise ValueError(
                "`freeze_batchnorm=True` would keep the BatchNorm statistics of Retrain's freshly initialised network (mean 0,"
                " variance 1) for its whole training; Retrain trains from scratch: leave it False."
            )
        if recipe not in ("auto", "model", "cross_entropy"):
            raise ValueError(f"`recipe` must be one of ['auto', 'model', 'cross_entropy'], got {recipe!r}.")
        own = _own_recipe(self.model)
        if recipe == "model" and not own:
            raise ValueError(
                f"`recipe`='model' needs a LightningModule with its own training_step and configure_optimizers, got"
                f" {type(self.model).__name__}."
            )
        self.recipe = "model" if recipe == "model" or (recipe == "auto" and own) else "cross_entropy"
        if self.recipe == "model" and not self.model.automatic_optimization:
            raise ValueError(
                f"`recipe`='model' runs {type(self.model).__name__}.training_step under automatic optimisation, but the"
                " module optimises manually; use recipe='cross_entropy'."
            )
        reset_parameters(self.model, seed)

    def _lend_trainer(self, hook: str) -> LightningModule:
        """The wrapped LightningModule, attached to this run's Trainer for ``hook`` (so its ``self.log`` works)."""
        inner: LightningModule = self.model  # type: ignore[assignment]
        inner.trainer = self.trainer
        inner._current_fx_name = hook
        return inner

    def configure_optimizers(self) -> Any:
        if self.recipe == "model":
            return self._lend_trainer("configure_optimizers").configure_optimizers()
        return super().configure_optimizers()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if self.recipe == "cross_entropy":
            return super().training_step(batch, batch_idx)
        out = self._lend_trainer("training_step").training_step(split_batch(batch), batch_idx)
        loss = out["loss"] if isinstance(out, dict) else out
        if loss is not None:
            self.check_finite(loss)
        return loss

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.cross_entropy(batch)
