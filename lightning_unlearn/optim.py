"""Optimisers and learning-rate schedules: the shortcut names, any ``torch.optim`` callable, and their records.

A method's or Classifier's ``optimizer`` is a shortcut name (``"adam"``, ``"adamw"``, ``"sgd"``,
configured by its ``lr``, ``weight_decay`` and ``momentum``) or a callable that takes the
parameters and returns a :class:`torch.optim.Optimizer`, as LightningCLI's ``OptimizerCallable``:
``functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9)`` in Python, ``class_path`` and
``init_args`` in YAML or on the command line. ``lr_scheduler`` is a callable that takes the
optimiser and returns a schedule (``LRSchedulerCallable``).

Hyper-parameters record a class, or a ``functools.partial`` of one with plain arguments (what the
CLI gives), as ``{"class_path": ..., "init_args": {...}}``: plain YAML, and a checkpoint that
``torch.load(weights_only=True)`` reads. Such a record is accepted back wherever a callable is, so
a method's Trainer checkpoint loads with the optimiser it ran with; the class it names must
already be imported (nothing is imported on a file's word). Any other callable (a lambda, a
function) is used as given and recorded by its ``repr`` only: pass it again to ``load_from_checkpoint``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Literal, Union, get_args

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

OptimizerName = Literal["sgd", "adam", "adamw"]
"""The shortcut names of ``optimizer``."""
OptimizerChoice = Union[OptimizerName, OptimizerCallable]
"""What ``optimizer`` takes: a shortcut name or a callable ``(params) -> Optimizer``."""
_SHORTCUTS: tuple[str, ...] = get_args(OptimizerName)
_PLAIN = (bool, int, float, str, type(None))
_GROUP_RATES = ("lr", "initial_lr", "max_lr", "min_lr")
"""The learning rates a param group holds: its own and those a schedule keeps there (``initial_lr``; OneCycleLR's)."""
_SCHEDULE_RATES = ("base_lrs", "max_lrs", "min_lrs")
"""The learning rates a schedule derives the groups' from (CyclicLR's ``max_lrs``, ReduceLROnPlateau's floors)."""

_SHORTCUT_HELP = "a callable that takes the parameters and returns a torch.optim.Optimizer (e.g. functools.partial(torch.optim.SGD, lr=0.01))"
_SCHEDULE_HELP = "a callable that takes the optimiser and returns a learning-rate schedule (e.g. functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1))"


# ------------------------------------------------------------------------------ checks
def check_optimizer(value: Any, argument: str = "optimizer") -> Any:
    """``value`` as a valid ``optimizer``: a shortcut name, a callable, or a callable's record (made back into one).

    Raises:
        ValueError: for a string that is not a shortcut name, or a record of an unknown class.
        TypeError: for anything else that is not callable, or a class that is not an optimiser.
    """
    if isinstance(value, str):
        if value not in _SHORTCUTS:
            raise ValueError(f"`{argument}` must be one of {list(_SHORTCUTS)}, got {value!r}.")
        return value
    if isinstance(value, dict):
        return _from_record(value, argument, torch.optim.Optimizer)
    if not callable(value):
        raise TypeError(f"`{argument}` must be one of {list(_SHORTCUTS)} or {_SHORTCUT_HELP}, got {_shown(value)}.")
    cls = _class_and_arguments(value)[0]
    if cls is not None and not issubclass(cls, torch.optim.Optimizer):
        raise TypeError(f"`{argument}` must make a torch.optim.Optimizer, got a callable that makes {cls.__name__}.")
    return value


def check_scheduler(value: Any, argument: str = "lr_scheduler") -> Any:
    """``value`` as a valid ``lr_scheduler``: ``None``, a callable, or a callable's record (made back into one).

    Raises:
        ValueError: for a record of an unknown class.
        TypeError: for anything else that is not callable, or a class that is not a schedule.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        return _from_record(value, argument, LRScheduler, ReduceLROnPlateau)
    if isinstance(value, str) or not callable(value):
        raise TypeError(f"`{argument}` must be None or {_SCHEDULE_HELP}, got {_shown(value)}.")
    cls = _class_and_arguments(value)[0]
    if cls is not None and not issubclass(cls, (LRScheduler, ReduceLROnPlateau)):
        raise TypeError(f"`{argument}` must make a learning-rate schedule (torch.optim.lr_scheduler), got a callable"
                        f" that makes {cls.__name__}.")
    return value


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# ------------------------------------------------------------------------------ building
def build_optimizer(
    params: Any, name: OptimizerChoice, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """The optimiser of ``params``: a shortcut name with ``lr``, ``weight_decay`` and ``momentum`` (SGD's),
    or a callable (or its record) applied to ``params``, whose own arguments then rule (``lr``,
    ``weight_decay`` and ``momentum`` are not used).

    Example:
        >>> import functools
        >>> layer = torch.nn.Linear(2, 2)
        >>> build_optimizer(layer.parameters(), "sgd", lr=0.1).defaults["momentum"]
        0.9
        >>> build_optimizer(layer.parameters(), functools.partial(torch.optim.RMSprop, lr=0.01), lr=0.1).defaults["lr"]
        0.01
    """
    if not isinstance(name, str):
        made = check_optimizer(name)(params)
        if not isinstance(made, torch.optim.Optimizer):
            raise TypeError(f"`optimizer` must return a torch.optim.Optimizer, got {type(made).__name__}.")
        return made
    if lr <= 0:
        raise ValueError(f"`lr` must be > 0, got {lr}.")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"`optimizer` must be one of {list(_SHORTCUTS)}, got {name!r}.")


def build_scheduler(lr_scheduler: Any, optimizer: torch.optim.Optimizer) -> LRScheduler | ReduceLROnPlateau:
    """The schedule ``lr_scheduler`` (a callable or its record) makes for ``optimizer``."""
    made = check_scheduler(lr_scheduler)(optimizer)
    if not isinstance(made, (LRScheduler, ReduceLROnPlateau)):
        raise TypeError(f"`lr_scheduler` must return a learning-rate schedule, got {type(made).__name__}.")
    return made


def optimization(optimizers: list[torch.optim.Optimizer], lr_scheduler: Any, monitor: str | None = "train/loss") -> Any:
    """What ``configure_optimizers`` returns for ``optimizers``: with ``lr_scheduler``, a schedule for each.

    Lightning steps the schedules once per epoch. A ReduceLROnPlateau watches ``monitor``, or the
    ``monitor`` of LightningCLI's ``lightning.pytorch.cli.ReduceLROnPlateau``; ``monitor=None`` under
    manual optimisation, where the method steps them (:func:`step_schedules`).
    """
    if lr_scheduler is None:
        return optimizers[0] if len(optimizers) == 1 else list(optimizers)
    configs = []
    for optimizer in optimizers:
        schedule = build_scheduler(lr_scheduler, optimizer)
        config: dict[str, Any] = {"scheduler": schedule}
        if isinstance(schedule, ReduceLROnPlateau) and monitor is not None:
            config["monitor"] = getattr(schedule, "monitor", monitor)
        configs.append(config)
    if len(optimizers) == 1:
        return {"optimizer": optimizers[0], "lr_scheduler": configs[0]}
    return list(optimizers), configs


def step_schedules(trainer: Any, monitor: str = "train/loss") -> None:
    """Step every schedule of ``trainer`` once, as Lightning does at an epoch's end under automatic
    optimisation (a method that optimises manually calls this itself); a ReduceLROnPlateau with the
    value of ``monitor`` (or its own ``monitor``), skipped while that value is not logged yet."""
    for config in getattr(trainer, "lr_scheduler_configs", []):
        if isinstance(config.scheduler, ReduceLROnPlateau):
            value = trainer.callback_metrics.get(config.monitor or getattr(config.scheduler, "monitor", monitor))
            if value is not None:
                config.scheduler.step(value)
        else:
            config.scheduler.step()


# ------------------------------------------------------------------------------ records
def record(value: Any) -> Any:
    """``value`` as hyper-parameters store it: a class, or a ``functools.partial`` of one with plain
    arguments, as ``{"class_path", "init_args"}``; a name, ``None`` or a record as it is; any other
    callable (a lambda, a function) by its ``repr`` (hyper-parameters stay plain; it cannot be rebuilt).

    Example:
        >>> import functools
        >>> record(functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
        {'class_path': 'torch.optim.SGD', 'init_args': {'lr': 0.05, 'momentum': 0.9}}
    """
    if value is None or isinstance(value, (str, dict)):
        return value
    cls, kwargs = _class_and_arguments(value)
    if cls is None or not all(_is_plain(v) for v in kwargs.values()):
        return repr(value)
    return {"class_path": _class_path(cls), "init_args": dict(kwargs)}


OPTIMIZATION_ARGUMENTS = ("optimizer", "lr_scheduler")
"""The arguments saved by :func:`add_records` rather than by Lightning's ``save_hyperparameters`` (which
drops a callable it cannot pickle, a lambda, and would store a partial's class itself)."""


def add_records(hparams: Any, given: dict[str, Any]) -> Any:
    """``hparams`` (a dict, changed in place) with each of ``given`` (``optimizer``, ``lr_scheduler``) recorded
    (see :func:`record`)."""
    for key, value in given.items():
        hparams[key] = record(value)
    return hparams


def _class_and_arguments(value: Any) -> tuple[type | None, dict[str, Any]]:
    """``(cls, keyword arguments)`` of a class or a partial of one (jsonargparse's too); ``(None, {})`` otherwise."""
    if isinstance(value, type):
        return value, {}
    if not isinstance(value, functools.partial):
        return None, {}
    if isinstance(value.func, type) and not value.args:
        return value.func, dict(value.keywords)
    # jsonargparse's callable: partial(call_without_instantiate_context, class_instantiator, cls, **init_args)
    if (str(getattr(value.func, "__module__", "")).startswith("jsonargparse") and value.args
            and isinstance(value.args[-1], type)):
        return value.args[-1], dict(value.keywords)
    return None, {}


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _class_path(cls: type) -> str:
    """The shortest import path of ``cls`` (``torch.optim.SGD`` rather than ``torch.optim.sgd.SGD``)."""
    parts = cls.__module__.split(".")
    for i in range(1, len(parts) + 1):
        module = ".".join(parts[:i])
        if getattr(sys.modules.get(module), cls.__qualname__, None) is cls:
            return f"{module}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _from_record(value: dict[str, Any], argument: str, *bases: type) -> functools.partial:
    """The callable a record ``{"class_path", "init_args"}`` describes; its class must already be imported."""
    class_path, init_args = value.get("class_path"), value.get("init_args", {})
    if not isinstance(class_path, str) or not isinstance(init_args, dict) or set(value) - {"class_path", "init_args"}:
        raise ValueError(f"`{argument}` as a dict must be {{'class_path': ..., 'init_args': {{...}}}}, got {value!r}.")
    cls = _imported(class_path)
    kinds = " or ".join(base.__name__ for base in bases)
    if not (isinstance(cls, type) and issubclass(cls, bases)):
        raise ValueError(f"`{argument}` names {class_path!r}, which is not an imported {kinds} class (a record"
                         " names only classes already imported: import its module first).")
    return functools.partial(cls, **init_args)


def _imported(path: str) -> Any:
    """The object at ``path`` in a module already imported (``None`` if there is none): nothing is imported."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is None:
            continue
        obj: Any = module
        for name in parts[i:]:
            obj = getattr(obj, name, None)
        return obj
    return None


# ------------------------------------------------------------------------------ scaling
def learning_rates(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Every param group's learning rates: its ``lr`` and those a schedule keeps in the group."""
    return [{k: group[k] for k in _GROUP_RATES if isinstance(group.get(k), (int, float, torch.Tensor))
             and not isinstance(group.get(k), bool)} for group in optimizer.param_groups]


def scale_learning_rates(optimizer: torch.optim.Optimizer, factor: float, rates: list[dict[str, Any]] | None = None) -> None:
    """Set every param group's learning rates to ``rates`` (default: their current values) times ``factor``.

    ``rates`` taken before ``optimizer.load_state_dict`` keep the rates of the moment rather than
    those of the saved state: where a schedule has got to, at the run's scale.
    """
    for group, saved in zip(optimizer.param_groups, rates if rates is not None else learning_rates(optimizer)):
        for key, value in saved.items():
            group[key] = value * factor


def scale_schedule(scheduler: Any, factor: float) -> None:
    """Scale the learning rates a schedule computes the groups' from (``base_lrs``, ``max_lrs``, ``min_lrs``;
    those of the schedules a SequentialLR or ChainedScheduler holds too).

    Together with :func:`scale_learning_rates`, the rates stay ``factor`` times the schedule's own at
    every later step, for schedules that compute from their ``base_lrs`` (LambdaLR) as for those that
    update the groups' rates in place (StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau).
    """
    for name in _SCHEDULE_RATES:
        values = getattr(scheduler, name, None)
        if isinstance(values, list):
            setattr(scheduler, name, [v * factor for v in values])
    for inner in getattr(scheduler, "_schedulers", None) or ():
        scale_schedule(inner, factor)


__all__ = [
    "LRSchedulerCallable",
    "OptimizerCallable",
    "OptimizerChoice",
    "OptimizerName",
    "OPTIMIZATION_ARGUMENTS",
    "build_optimizer",
    "build_scheduler",
    "check_optimizer",
    "check_scheduler",
    "learning_rates",
    "optimization",
    "add_records",
    "record",
    "scale_learning_rates",
    "scale_schedule",
    "step_schedules",
]
