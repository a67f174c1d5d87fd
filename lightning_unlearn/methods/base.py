"""The base class of every unlearning method: a LightningModule wrapping the user's classifier."""

from __future__ import annotations

import copy
import inspect
import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_unlearn.checkpoints import _build_from_checkpoint, architecture_of, load_model_weights
from lightning_unlearn.data.datamodule import SPLITS, TrainingData
from lightning_unlearn.methods.checks import check_model_inputs, check_number, non_finite_inputs
from lightning_unlearn.methods.persistence import FROM_STATE_DICT, MethodCheckpoints
from lightning_unlearn.metrics.accuracy import SplitAccuracy
from lightning_unlearn.models.anatomy import Anatomy, batchnorm_layers
from lightning_unlearn.outputs import SplitOutputs, predict
from lightning_unlearn.request import REQUEST_OPTIONS, ServeRequest, UnlearningOutcome, validate_request_options
from lightning_unlearn.models.classifier import split_batch
from lightning_unlearn.optim import (OPTIMIZATION_ARGUMENTS, OptimizerName, add_records, build_optimizer,
                                     check_optimizer, check_scheduler, optimization)
from lightning_unlearn.serialization import tuples_as_lists

if TYPE_CHECKING:
    from lightning_unlearn.data.datamodule import UnlearningDataModule

DataNeed = Literal["forget", "retain", "both"]


class NonFiniteLossError(FloatingPointError):
    """Raised when an unlearning loss becomes NaN or infinite (e.g. runaway gradient ascent)."""


_DATA_MODULE_API = ("dataloader", "split_dataset", "has_split")
"""What a data module offers for a method to read its splits (an :class:`UnlearningDataModule` does)."""


def _serving_datamodule(trainer: Any) -> Any:
    """The Trainer's data module when it serves splits (see :data:`_DATA_MODULE_API`), else ``None``."""
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    return dm if dm is not None and all(callable(getattr(dm, name, None)) for name in _DATA_MODULE_API) else None


class UnlearningMethod(MethodCheckpoints, LightningModule):
    """Base class of the unlearning methods.

    Wraps a trained classifier (``nn.Module`` or ``LightningModule``). The classifier is
    deep-copied: the user's object and checkpoint are never modified; the copy, available
    as :attr:`unlearned_model`, is what the method changes. Fit it with a Trainer and an
    :class:`~lightning_unlearn.data.UnlearningDataModule`: the data module then serves the
    training data the method declares as :attr:`training_data` and the splits it validates
    (:attr:`validated_splits`). The method reads whatever else it needs (e.g. the whole forget
    set, to compute targets) from :attr:`datamodule`; data flows one way, from the data module
    to the method.

    Subclasses implement :meth:`unlearning_step` (the loss of one batch) and may override
    :meth:`prepare_unlearning` (work done once before the first step, inside the timed
    region, e.g. caching soft targets), :attr:`training_data` and
    :meth:`trainable_parameters`.

    Args:
        model: the trained classifier to unlearn.
        checkpoint: optional weights for ``model`` (Lightning checkpoint or state dict).
        num_classes: size of the label space (default: the head's ``out_features``).
        head: dotted path of the final linear layer (default: found automatically).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (with ``lr``, ``weight_decay``, ``momentum``), or a
            callable that takes the parameters and returns any ``torch.optim`` optimiser, e.g.
            ``functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)`` (YAML and CLI: ``class_path``
            and ``init_args``); its own arguments then rule, and ``lr``, ``weight_decay`` and
            ``momentum`` are not used. A method with several optimisers applies it to each.
        lr: learning rate.
        weight_decay: weight decay.
        momentum: SGD momentum.
        lr_scheduler: a callable that takes an optimiser and returns a learning-rate schedule, e.g.
            ``functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)``: one per
            optimiser, stepped once per epoch (a ReduceLROnPlateau watches ``train/loss``). The
            request's learning-rate changes (back-off, speed-up) scale the schedule with the rates.
        max_epochs: passes over the method's training data; with a target, the step budget is at least
            this many passes (see ``max_steps``); without one (``target=None``), the epoch budget.
        val_splits: splits whose accuracy is logged as ``val/<split>_acc`` when the Trainer validates.
        seed: seed of the method's own random choices.
        freeze_batchnorm: keep every BatchNorm layer of the model in eval mode while it trains: layers normalise
            with the running statistics of the original training and do not update them (their affine weights
            still train). Off by default. A method that trains on D_f alone updates them from batches of the
            forgotten samples only (one class, for a class-wise request), which shifts every class's features.
        target: the request's target: ``"auto"`` (default: derived from the forget specification;
            see :mod:`lightning_unlearn.request`), a forget accuracy in [0, 1], or ``None`` (run the
            fixed budget only).
        guard: the utility guard: largest allowed drop of the held-out accuracy on retained classes
            below its value before unlearning (default 0.02; ``None`` turns it off).
        strict: raise :class:`~lightning_unlearn.request.UnlearningTargetError` instead of warning
            when the target is not reached.
        max_steps: step budget (training batches); default ``max(max_epochs`` passes, ``min_steps)``
            when there is a target.
        min_steps: floor of the default step budget (a tiny forget set still gets enough steps).
        check_every: steps between checks of the target and guard (default: derived from the
            number of checked samples, so the checks cost about a quarter of the run).

    Raises:
        HeadNotFoundError: if the classifier has no detectable linear head.
        ValueError: for invalid hyper-parameters.
    """

    data_need: ClassVar[DataNeed] = "forget"
    iterative: ClassVar[bool] = True
    """False for closed-form methods: they cannot run towards a target."""
    rolls_back: ClassVar[bool] = True
    """Whether the request may send the run back to its best checked state when the forget accuracy
    crosses its aim between two checks (see :class:`~lightning_unlearn.request.ServeRequest`)."""
    needs_head_output: ClassVar[str | None] = None
    """Why the method computes ``logits = head(embeddings)`` (``None``: it does not): such a method refuses,
    at setup, a model whose output is not its final linear layer's output."""
    trains_in_epochs: ClassVar[bool] = True
    """False for methods that do all their work before the first epoch (``max_epochs=0`` is then their default)."""
    method_name: ClassVar[str] = "base"
    paper: ClassVar[str] = ""
    limitation: ClassVar[str | None] = None
    """A measured limit of the method under the default request (``None``: none known): named in the
    warning of a request it does not serve and in the outcome's notes, so a user reads why and what to use instead."""

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        checkpoint: str | None = None,
        num_classes: int | None = None,
        head: str | None = None,
        optimizer: OptimizerName | OptimizerCallable = "adam",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        lr_scheduler: LRSchedulerCallable | None = None,
        max_epochs: int = 5,
        val_splits: tuple[str, ...] = ("forget", "test"),
        seed: int = 0,
        freeze_batchnorm: bool = False,
        target: float | Literal["auto"] | None = "auto",
        guard: float | None = 0.02,
        strict: bool = False,
        max_steps: int | None = None,
        min_steps: int = 200,
        check_every: int | None = None,
    ) -> None:
        super().__init__()
        architecture = None
        if model is None and checkpoint is not None:
            model, architecture = _build_from_checkpoint(checkpoint)  # the checkpoint records the architecture
            checkpoint_loaded = True
        else:
            checkpoint_loaded = False
        if model is None:
            raise ValueError(
                "`model` is required: pass the trained classifier (nn.Module or LightningModule) to unlearn, or a"
                " `checkpoint` of a Classifier built by name."
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module or LightningModule, got {type(model).__name__}.")
        if type(self).unlearning_step is UnlearningMethod.unlearning_step and type(self).training_step is UnlearningMethod.training_step:
            raise TypeError(f"{type(self).__name__} does not implement unlearning_step(): use a registered method (e.g."
                            " FineTune, see available_methods()) or a subclass that implements it.")
        check_optimizer(optimizer)
        check_scheduler(lr_scheduler)
        self._optimizer_arguments = {"optimizer": optimizer, "lr_scheduler": lr_scheduler}  # saved as records
        check_number("lr", lr, "> 0", lambda v: v > 0)
        check_number("weight_decay", weight_decay, ">= 0", lambda v: v >= 0)
        check_number("momentum", momentum, "in [0, 1]", lambda v: 0 <= v <= 1)
        if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 0:
            raise ValueError(f"`max_epochs` must be an integer >= 0, got {max_epochs!r}.")
        unknown = [s for s in ([val_splits] if isinstance(val_splits, str) else val_splits) if s not in SPLITS]
        if isinstance(val_splits, str) or unknown:
            raise ValueError(f"`val_splits` must be a list of split names among {list(SPLITS)}, got {val_splits!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}.")
        if not isinstance(freeze_batchnorm, bool):
            raise TypeError(f"`freeze_batchnorm` must be a bool, got {freeze_batchnorm!r}.")
        validate_request_options(target, guard, strict, max_steps, min_steps, check_every)
        if max_epochs == 0 and self.trains_in_epochs and target is None and max_steps is None:
            raise ValueError(
                f"`max_epochs`=0 with `target=None` and no `max_steps` runs no training step: {type(self).__name__}"
                " would return the model unchanged. Give max_epochs >= 1, a `max_steps` budget or a target."
            )
        if strict and not self.iterative:
            raise ValueError(
                f"`strict=True` needs an iterative method; {type(self).__name__} does all its work in one call and"
                " cannot run towards a target (its outcome still reports whether the target is reached)."
            )
        self.save_hyperparameters(ignore=["model"])
        self.model = copy.deepcopy(model).train()  # the user's model may be in eval mode; its copy trains
        self.architecture = architecture or architecture_of(model)
        if checkpoint is not None and not checkpoint_loaded and not FROM_STATE_DICT.get():
            load_model_weights(self.model, checkpoint)
        self.anatomy = Anatomy(self.model, num_classes, head)
        self.num_classes = self.anatomy.num_classes
        self.val_splits = tuple(val_splits)
        # One correctness flag per dataset index: exact under DDP, where DistributedSampler pads the shards.
        self.val_accuracy = nn.ModuleDict({s: SplitAccuracy() for s in self.val_splits})
        self.test_accuracy = nn.ModuleDict()
        self.runtime_s = 0.0
        self.notes: list[str] = []
        """What the method did differently for this model (added to the outcome's ``notes``)."""
        self.outcome: UnlearningOutcome | None = None
        self._t_start: float | None = None

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        """Lightning's, with tuples stored as lists: a logged ``hparams.yaml`` is plain YAML (no ``!!python/tuple``);
        ``optimizer`` and ``lr_scheduler`` are stored as their records (:func:`lightning_unlearn.optim.record`)."""
        caller = frame or inspect.currentframe().f_back  # type: ignore[union-attr]  (the __init__ that called this)
        ignored = [ignore] if isinstance(ignore, str) else list(ignore or [])
        super().save_hyperparameters(*args, ignore=[*ignored, *OPTIMIZATION_ARGUMENTS], frame=caller, logger=logger)
        given = {k: v for k, v in getattr(self, "_optimizer_arguments", {}).items() if k not in ignored and not args}
        self._hparams = tuples_as_lists(add_records(self._hparams, given))
        self._hparams_initial = tuples_as_lists(add_records(self._hparams_initial, given))

    # ------------------------------------------------------------------ model
    @property
    def unlearned_model(self) -> nn.Module:
        """The classifier being unlearned (the deep copy)."""
        return self.model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def forward_with_embeddings(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, embeddings)`` in one forward pass."""
        return self.anatomy.forward_with_embeddings(x)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (default: the whole classifier)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        """The ``optimizer`` of :meth:`trainable_parameters`, with its ``lr_scheduler`` when one is given."""
        return self.optimization([self.make_optimizer(self.trainable_parameters())])

    def make_optimizer(self, params: Any, lr: float | None = None) -> torch.optim.Optimizer:
        """The method's ``optimizer`` of ``params``: the callable given, or the shortcut with ``lr`` (default:
        the method's), ``weight_decay`` and ``momentum``."""
        hp, optimizer = self.hparams, self._optimizer_arguments["optimizer"]  # (hparams hold its record)
        return build_optimizer(params, optimizer, hp.lr if lr is None else lr, hp.weight_decay, hp.momentum)

    def optimization(self, optimizers: list[torch.optim.Optimizer]) -> Any:
        """What :meth:`configure_optimizers` returns for ``optimizers``: each with a ``lr_scheduler`` schedule when given."""
        monitor = "train/loss" if self.automatic_optimization else None  # (manual: the method steps its schedules)
        return optimization(optimizers, self._optimizer_arguments["lr_scheduler"], monitor)

    # ------------------------------------------------------------------- data
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for old in ("unlearning_dataloader", "unlearning_val_dataloader"):
            if callable(getattr(cls, old, None)):  # an override the data module would silently ignore
                raise TypeError(
                    f"{cls.__name__}.{old} is no longer called: declare the training data as the `training_data`"
                    " property (a lightning_unlearn.data.TrainingData) and read other splits from `self.datamodule`."
                )

    @property
    def datamodule(self) -> UnlearningDataModule:
        """The Trainer's :class:`~lightning_unlearn.data.UnlearningDataModule`: where the method reads its splits.

        Raises:
            MisconfigurationException: when the method is not fitted with one (no Trainer, no data module,
                or a data module that serves no splits).
        """
        dm = _serving_datamodule(self._trainer)
        if dm is None:
            trainer_dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
            what = ("it is not attached to a Trainer" if self._trainer is None else "the Trainer has no data module"
                    if trainer_dm is None else f"the Trainer's {type(trainer_dm).__name__} serves no splits")
            raise MisconfigurationException(
                f"{type(self).__name__} reads its data from the Trainer's UnlearningDataModule, but {what}: fit it with"
                " `trainer.fit(method, datamodule=UnlearningDataModule(...))`."
            )
        return dm

    @property
    def training_data(self) -> TrainingData:
        """What the method trains on, served by the data module's ``train_dataloader`` (see
        :class:`~lightning_unlearn.data.TrainingData`). Default: D_r for a method that needs only the
        retain set, else D_f, shuffled."""
        return TrainingData(("retain",) if self.data_need == "retain" else ("forget",))

    def split_outputs(self, split: str, with_embeddings: bool = False) -> SplitOutputs:
        """One no-grad eval-mode pass of the current model over the whole ``split`` of :attr:`datamodule`.

        Every process passes the whole split, so the outputs do not depend on the number of processes.
        Logits, labels, dataset indices (and the head's input embeddings) on the CPU, in split order.
        """
        dm = self.datamodule
        loader = DataLoader(dm.split_dataset(split), batch_size=dm.eval_batch_size)  # type: ignore[arg-type]
        return predict(self.model, loader, with_embeddings, head=self.anatomy.head_name if with_embeddings else None)

    def check_data(self, datamodule: UnlearningDataModule) -> None:
        """Raise a clear error when the data module cannot serve what this method needs."""
        from lightning_unlearn.methods.registry import METHODS

        if self.data_need in ("retain", "both") and not datamodule.has_split("retain"):
            free = sorted(c.method_name for c in METHODS.values() if c.data_need == "forget")
            raise ValueError(
                f"{type(self).__name__} needs a non-empty retain set, but the data module's retain split is empty."
                f" Retain-free methods: {', '.join(free)}."
            )
        if self.data_need in ("forget", "both") and not datamodule.has_split("forget"):
            raise ValueError(f"{type(self).__name__} needs a non-empty forget set.")

    # --------------------------------------------------------------- training
    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The loss of one batch. Override in every automatically optimised method."""
        raise NotImplementedError(f"{type(self).__name__} must implement unlearning_step().")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        loss = self.unlearning_step(batch, batch_idx)
        self.check_finite_inputs(loss, batch)
        request = self._request()
        if request is not None:
            # One decision for every process (a step skipped on one process only would hang DDP).
            if self.trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(loss).all()), all=False):
                request.stop_on_non_finite(self.trainer, self)  # back to the best checked state, or the run ends
                return None  # the update is skipped
        self.check_finite(loss)
        self.log("train/loss", loss.detach(), prog_bar=True)
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """With ``freeze_batchnorm``: every BatchNorm layer in eval mode for the step (before each batch: Lightning
        and the method's own no-grad passes put the model back in train mode)."""
        if self.hparams.get("freeze_batchnorm", False):
            for layer in batchnorm_layers(self.model):
                layer.eval()
        return None

    def check_finite_inputs(self, loss: Tensor, batch: Any) -> None:
        """On a non-finite ``loss``: a clear error if the batch's inputs hold NaN or infinity (no learning rate helps)."""
        if bool(torch.isfinite(loss).all()):
            return
        bad = non_finite_inputs(batch)
        if bad:
            raise ValueError(
                f"The training data holds non-finite inputs (NaN or infinity): dataset indices {bad[:5]}"
                f"{f' and {len(bad) - 5} more in this batch' if len(bad) > 5 else ''}. Clean or drop these samples;"
                " the unlearning loss cannot be finite on them."
            )

    def check_finite(self, loss: Tensor) -> None:
        """Halt with a clear message on a NaN/infinite loss (the weights keep their last finite values)."""
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"{type(self).__name__}: the unlearning loss became {loss.item()} at epoch {self.current_epoch},"
                f" step {self.global_step}. The update was not applied; lower `lr`, reduce `max_epochs`, or attach"
                " a stopping rule (e.g. stop at a forget-accuracy target)."
            )

    def cross_entropy(self, batch: Any) -> Tensor:
        """Mean cross-entropy of a batch under the current model."""
        x, y = split_batch(batch)
        return nn.functional.cross_entropy(self(x), y)

    def prepare_unlearning(self) -> None:
        """Work done once, before the first step, inside the timed region (override)."""

    # ------------------------------------------------------------- validation
    def add_val_splits(self, *splits: str) -> list[str]:
        """Also validate on ``splits`` (logged as ``val/<split>_acc``); returns the ones not validated before."""
        added = [s for s in dict.fromkeys(splits) if s not in self.val_splits]
        for split in added:
            self.val_splits = (*self.val_splits, split)
            self.val_accuracy[split] = SplitAccuracy()
        return added

    @property
    def validated_splits(self) -> tuple[str, ...]:
        """The splits validation scores, each logged once as ``val/<split>_acc``: those of :attr:`val_splits` the
        data module holds (all of them when the Trainer validates on its own loaders); the data module serves
        one loader per split, in this order."""
        dm = _serving_datamodule(self._trainer)
        return self.val_splits if dm is None else tuple(s for s in self.val_splits if dm.has_split(s))

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.validated_splits[dataloader_idx]
        metric = self.val_accuracy[split]
        self._update_accuracy(metric, batch)
        self.log(f"val/{split}_acc", metric, on_step=False, on_epoch=True, add_dataloader_idx=False)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """``trainer.test(method, datamodule=dm)``: the accuracy of the current model on the test split (``test/acc``)."""
        key = str(dataloader_idx)
        if key not in self.test_accuracy:
            self.test_accuracy[key] = SplitAccuracy().to(self.device)
        metric = self.test_accuracy[key]
        self._update_accuracy(metric, batch)
        self.log("test/acc" if dataloader_idx == 0 else f"test/acc_{dataloader_idx}", metric, on_step=False, on_epoch=True,
                 add_dataloader_idx=False)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """``trainer.predict(method, ...)``: the current model's logits of each batch's inputs."""
        x = split_batch(batch)[0] if isinstance(batch, (list, tuple)) else batch
        return self(x)

    def _update_accuracy(self, metric: SplitAccuracy, batch: Any) -> None:
        x, y = split_batch(batch)
        if len(batch) >= 3:
            indices = torch.as_tensor(batch[2])
        elif self.trainer.world_size == 1:  # (x, y) batches: positions in the loader identify the samples on one process
            seen = sum(int(t.numel()) for t in metric.split_indices)  # type: ignore[union-attr]
            indices = torch.arange(seen, seen + len(y))
        else:
            raise ValueError(
                f"{type(self).__name__} evaluates on several processes from batches of (x, y): each batch needs the"
                " samples' dataset indices as its third element, (x, y, index), so that the samples DistributedSampler"
                " repeats are counted once (UnlearningDataModule's loaders provide them)."
            )
        metric.update(self(x), y, indices)

    # ------------------------------------------------------------- the request
    def configure_callbacks(self) -> list[Callback]:
        """The request's :class:`~lightning_unlearn.request.ServeRequest`, unless the Trainer has one or it is off."""
        hp = self.hparams
        trainer = self._trainer
        if trainer is not None and any(isinstance(cb, ServeRequest) for cb in trainer.callbacks):
            return []
        request = ServeRequest(**{name: hp[name] for name in REQUEST_OPTIONS if name in hp})
        return [request] if request.checking or request.max_steps is not None else []

    def runs_to_budget(self) -> bool:
        """Whether the request's step budget (not ``max_epochs``) ends this method's runs."""
        return ServeRequest(**{name: self.hparams[name] for name in REQUEST_OPTIONS if name in self.hparams}).budget_applies()

    def _request(self) -> ServeRequest | None:
        trainer = self._trainer
        return next((cb for cb in trainer.callbacks if isinstance(cb, ServeRequest)), None) if trainer is not None else None

    # --------------------------------------------------------------- timing
    def setup(self, stage: str) -> None:
        if stage == "fit":  # the wall time of the request: every check and pass, from here to on_fit_end
            self._t_start = time.perf_counter()
        dm = _serving_datamodule(self._trainer)
        if dm is not None:  # (a Trainer given bare dataloaders has none to check against)
            self.check_inputs(dm)
            if stage == "fit":
                self.check_data(dm)

    def check_inputs(self, datamodule: Any, what: str = "The model") -> None:
        """Before any work: the model takes the data module's inputs and gives at least one logit per class.

        A checkpoint trained on other inputs than ``--data`` would otherwise fail deep inside a
        forward pass after the Trainer started (or, worse, run on the wrong label space).
        """
        shape = getattr(datamodule, "input_shape", None)
        if shape is not None:
            check_model_inputs(self.model, shape, getattr(datamodule, "num_classes", None), what)
            self._locate_head(shape)

    def _locate_head(self, input_shape: Any) -> None:
        """Read the head from one forward pass (see :meth:`~lightning_unlearn.models.Anatomy.inspect`)."""
        params = next(iter(self.model.parameters()), None)
        x = torch.zeros(2, *input_shape, device=params.device if params is not None else torch.device("cpu"))
        guessed = self.anatomy.head
        self.anatomy.inspect(x)  # the head as the forward pass runs it, and what follows it
        if self.anatomy.head is not guessed:  # registered after a wider layer that runs before it, say
            self.num_classes = self.anatomy.num_classes
            self.on_head_located(guessed)
        if self.needs_head_output:
            self.anatomy.require_head_output(type(self).__name__, self.needs_head_output)

    def on_head_located(self, guessed: nn.Module) -> None:
        """Called at setup when the forward pass shows that the head is not the layer ``guessed`` at
        construction (before any data was seen): redo whatever the constructor did with the head."""

    def on_fit_start(self) -> None:
        if self._t_start is None:
            self._t_start = time.perf_counter()
        self.prepare_unlearning()

    def on_train_epoch_end(self) -> None:
        request = self._request()
        if request is not None and request.budget is not None:
            return  # the request's step budget ends the run
        if self.current_epoch + 1 >= self.hparams.max_epochs:
            self.trainer.should_stop = True

    def on_fit_end(self) -> None:
        if self._t_start is not None:
            self.runtime_s += time.perf_counter() - self._t_start
            self._t_start = None
            if self.outcome is not None:
                self.outcome.runtime_s = self.runtime_s
                self.outcome.notes.extend(note for note in self.notes if note not in self.outcome.notes)
                rank_zero_info(self.outcome.summary())
            else:
                rank_zero_info(f"{type(self).__name__}: unlearning took {self.runtime_s:.2f} s.")
