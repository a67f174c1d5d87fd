"""The ``lightning-unlearn`` command line, built on :class:`~lightning.pytorch.cli.LightningCLI`.

Subcommands::

    lightning-unlearn --version # prints ``lightning-unlearn <version>``
    lightning-unlearn fit       # train the original Classifier on an UnlearningDataModule (standard LightningCLI)
    lightning-unlearn validate  # / test: standard LightningCLI
    lightning-unlearn unlearn   # serve a deletion request with a registered method, write the unlearned model
    lightning-unlearn evaluate  # score an unlearned model (accuracies, MIA, gaps to a reference) on one device
    lightning-unlearn benchmark # every registered method against Retrain on the bundled data (``make demo``)

Every method, data module, forget specification and callback is selectable by ``class_path`` in
YAML or by flags, e.g. ``--method SULI --method.layers 2 --data.forget ClassForget
--data.forget.classes 3 --trainer.devices 2 --trainer.strategy ddp``. ``--method`` also accepts
any registered name (case-insensitive, ``finetune``, ``neg-grad-plus``...); an unknown name
is an error that lists the registered ones.
"""

from __future__ import annotations

from lightning.pytorch.cli import ArgsType

# (importing the package imports every method and callback: all selectable by class name)
from lightning_unlearn.checkpoints import load_unlearned
from lightning_unlearn.cli.app import UnlearningCLI
from lightning_unlearn.cli.messages import one_line_error
from lightning_unlearn.cli.parsing import NETWORKS, UnlearningArgumentParser, UnlearningHelpFormatter, resolve_method_args
from lightning_unlearn.cli.subcommands import (
    CUSTOM_SUBCOMMANDS,
    DESCRIPTION,
    EVALUATE_TRAINER_ARGS,
    EVALUATE_TRAINER_DEFAULTS,
    EVALUATE_TRAINER_FIXED,
    LIGHTNING_SUBCOMMANDS,
    UNLEARN_TRAINER_DEFAULTS,
)

load_classifier = load_unlearned  # the loader's earlier name, kept importable from here


def main(args: ArgsType = None) -> None:
    """Entry point of the ``lightning-unlearn`` console script."""
    UnlearningCLI(args=args)


__all__ = [
    "CUSTOM_SUBCOMMANDS", "DESCRIPTION", "EVALUATE_TRAINER_ARGS", "EVALUATE_TRAINER_DEFAULTS", "EVALUATE_TRAINER_FIXED",
    "LIGHTNING_SUBCOMMANDS", "NETWORKS", "UNLEARN_TRAINER_DEFAULTS", "UnlearningArgumentParser", "UnlearningCLI",
    "UnlearningHelpFormatter", "load_classifier", "main", "one_line_error", "resolve_method_args",
]
