"""The :class:`UnlearningCLI`: LightningCLI with the package's subcommands beside ``fit``/``validate``/``test``
(see :mod:`lightning_unlearn.cli`)."""

from __future__ import annotations

import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from lightning_unlearn._version import __version__
from lightning_unlearn.benchmark import BenchmarkArgumentError, run_benchmark
from lightning_unlearn.cli.checks import check_evaluate_output, check_unlearn_inputs
from lightning_unlearn.cli.messages import _cli_message
from lightning_unlearn.cli.parsing import _OneLineParser, resolve_method_args
from lightning_unlearn.cli.runs import RunSubcommands
from lightning_unlearn.cli.subcommands import (
    CUSTOM_SUBCOMMANDS,
    DESCRIPTION,
    EVALUATE_TRAINER_ARGS,
    EVALUATE_TRAINER_DEFAULTS,
    EVALUATE_TRAINER_FIXED,
    LIGHTNING_SUBCOMMANDS,
    UNLEARN_TRAINER_DEFAULTS,
)
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.models.classifier import Classifier


class UnlearningCLI(LightningCLI, RunSubcommands):
    """LightningCLI with ``unlearn``, ``evaluate`` and ``benchmark`` beside ``fit``/``validate``/``test``.

    ``fit``, ``validate`` and ``test`` train and score the original
    :class:`~lightning_unlearn.models.Classifier` on an
    :class:`~lightning_unlearn.data.UnlearningDataModule` (``num_classes`` and ``input_shape``
    are linked from the data). ``unlearn`` takes a ``method`` (any registered
    :class:`~lightning_unlearn.methods.UnlearningMethod`; the original comes as
    ``--method.checkpoint`` and, for networks not built by name, ``--method.model``), runs it with
    the Trainer, and writes a run folder (``model.pt``, ``config.yaml``, ``manifest.json``,
    ``metrics.json``, ``audit.json``) through a temporary folder, renamed into place on success.

    Args:
        args: the arguments (default: ``sys.argv[1:]``); a list of strings or a dict.
        run: run the chosen subcommand.
        **kwargs: forwarded to :class:`LightningCLI`.

    Raises:
        SystemExit: for invalid arguments (jsonargparse's message), an unknown method name
            (the message lists the registered ones), a missing checkpoint or one of another architecture.

    Example:
        >>> UnlearningCLI(["unlearn", "--method", "FineTune", "--method.checkpoint", "original.ckpt",
        ...                "--data.forget", "ClassForget", "--data.forget.classes", "3",
        ...                "--output", "runs/finetune"])  # doctest: +SKIP
    """

    def __init__(self, args: ArgsType = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", Classifier)
        kwargs.setdefault("datamodule_class", UnlearningDataModule)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"prog": "lightning-unlearn", "version": __version__,
                                            "description": DESCRIPTION})
        kwargs.setdefault("parser_class", _OneLineParser)
        super().__init__(args=args, run=run, **kwargs)

    # private override: LightningCLI seeds between parsing and before_instantiate_classes, and no public hook
    # or option quiets seed_everything's log line
    def _set_seed(self) -> None:
        if self.config.get("subcommand") not in CUSTOM_SUBCOMMANDS:
            super()._set_seed()
            return
        seed_logger = logging.getLogger("lightning.fabric.utilities.seed")
        level = seed_logger.level
        seed_logger.setLevel(logging.WARNING)  # the seed is in the run's config.yaml; an error stays the only line
        try:
            super()._set_seed()
        finally:
            seed_logger.setLevel(level)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        base = LightningCLI.subcommands()
        return {"fit": base["fit"], "validate": base["validate"], "test": base["test"], **{k: set() for k in CUSTOM_SUBCOMMANDS}}

    # ----------------------------------------------------------------- parsers
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data", "model.num_classes", compute_fn=lambda dm: dm.num_classes, apply_on="instantiate")
        parser.link_arguments("data", "model.input_shape", compute_fn=lambda dm: dm.input_shape, apply_on="instantiate")

    # private override: LightningCLI builds a subcommand's parser from the Trainer method of that name only
    # (`unlearn`, `evaluate`, `benchmark` and `audit` are none), and no public hook adds other subcommands
    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        parser_subcommands = parser.add_subcommands()
        for subcommand in self.subcommands():
            subparser_kwargs = dict(kwargs.get(subcommand, {}))
            if subcommand in CUSTOM_SUBCOMMANDS:
                description = CUSTOM_SUBCOMMANDS[subcommand]
                subparser_kwargs.setdefault("description", description)
                subcommand_parser = self._prepare_custom_parser(subcommand, **subparser_kwargs)
            else:
                description = LIGHTNING_SUBCOMMANDS[subcommand]
                subparser_kwargs.setdefault("description", description)
                subcommand_parser = self._prepare_subcommand_parser(self.trainer_class, subcommand, **subparser_kwargs)  # type: ignore[arg-type]
                if subcommand == "fit":
                    subcommand_parser.add_argument(
                        "--output", type=Optional[str], default=None,
                        help="Write the final checkpoint here after fit (after every callback's fit-end work, e.g. the"
                        " PrototypeRecorder's Gram pass): the original model for `unlearn --method.checkpoint`.",
                    )
            self._subcommand_parsers[subcommand] = subcommand_parser
            parser_subcommands.add_subcommand(subcommand, subcommand_parser, help=description)

    def after_fit(self) -> None:
        """Save the final checkpoint to ``--output`` (temporary file, then rename: never half-written)."""
        output = self.config["fit"].get("output")
        if output is None:
            return
        path = Path(output)
        tmp = path.with_name(f".{path.name}.tmp")
        self.trainer.save_checkpoint(tmp)  # collective: every rank calls it, rank 0 writes
        if self.trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
            print(f"original model written to {path}")

    def _prepare_custom_parser(self, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = self.init_parser(**kwargs)
        self.add_default_arguments_to_parser(parser)  # --seed_everything
        parser.set_defaults({"seed_everything": 0 if subcommand == "unlearn" else False})
        if subcommand == "benchmark":
            added = parser.add_function_arguments(run_benchmark)
        else:
            if subcommand == "unlearn":
                parser.add_lightning_class_args(self.trainer_class, "trainer")  # type: ignore[arg-type]
                parser.set_defaults({f"trainer.{k}": v for k, v in UNLEARN_TRAINER_DEFAULTS.items()})
                parser.add_lightning_class_args(UnlearningMethod, "method", subclass_mode=True, required=True)
            elif subcommand == "evaluate":  # the Trainer options its passes use (Trainer.predict on one device)
                skip = set(inspect.signature(self.trainer_class.__init__).parameters) - {"self", *EVALUATE_TRAINER_ARGS}
                parser.add_class_arguments(self.trainer_class, "trainer", fail_untyped=False, instantiate=False,
                                           sub_configs=True, skip=skip)  # type: ignore[arg-type]
                parser.set_defaults({f"trainer.{k}": v for k, v in EVALUATE_TRAINER_DEFAULTS.items()})
                if "trainer" in getattr(parser, "groups", {}):
                    parser.groups["trainer"].title = "The Lightning Trainer of the evaluation passes (one device)"
            parser.add_lightning_class_args(UnlearningDataModule, "data")
            added = parser.add_method_arguments(type(self), f"run_{subcommand}", skip={"self"})
        self._subcommand_method_arguments[subcommand] = added
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        if args is not None and not isinstance(args, list):  # a dict or Namespace
            super().parse_arguments(parser, args)
            return
        raw = list(sys.argv[1:] if args is None else args)
        self._raw_args = raw
        try:
            resolved = resolve_method_args(raw)
        except ValueError as err:
            target = self._subcommand_parsers.get(raw[0], parser) if raw else parser
            target.error(f"`--method`: {err}")
        self.config = parser.parse_args(resolved)
        if self.config.get("subcommand") == "fit":  # before anything runs (the seed is set next)
            output = self.config["fit"].get("output")
            if output is not None and Path(output).is_dir():
                self._parser("fit").error(f"`--output` {output!r} is a folder: give the checkpoint file to write"
                                          " (e.g. runs/original.ckpt).")

    # private override: no public switch keeps LightningCLI from reading a subcommand's --ckpt_path into `model`
    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads `--ckpt_path`'s hyper-parameters into `model`; `unlearn --ckpt_path` resumes a run
        # with the method and options of its own arguments (those of the interrupted run).
        if self.config.get("subcommand") in CUSTOM_SUBCOMMANDS:
            return
        super()._parse_ckpt_path()

    # ----------------------------------------------------------- instantiation
    def before_instantiate_classes(self) -> None:
        """Fail fast, before any work, on an existing output folder or a checkpoint that does not exist."""
        if self.subcommand == "evaluate":
            check_evaluate_output(self.config["evaluate"], self._parser("evaluate"))
        elif self.subcommand == "unlearn":
            check_unlearn_inputs(self.config["unlearn"], self._parser("unlearn"), getattr(self, "_raw_args", []))

    def instantiate_classes(self) -> None:
        if self.subcommand not in CUSTOM_SUBCOMMANDS:
            super().instantiate_classes()
            return
        parser = self._parser(self.subcommand)
        try:
            instantiate = getattr(self.parser, "instantiate", None) or self.parser.instantiate_classes
            self.config_init = instantiate(self.config)
        except (ValueError, TypeError, FileNotFoundError, IsADirectoryError) as err:  # errors raised by __init__
            parser.error(_cli_message(err))
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "method")
        self.trainer = None  # type: ignore[assignment]
        if self.datamodule is not None:  # before the Trainer starts: the split, the manifest, the model against the data
            try:
                self.datamodule.setup()
                if self.subcommand == "unlearn":
                    checkpoint = self._get(self.config, "method")["init_args"].get("checkpoint")
                    what = f"The model of `--method.checkpoint` {str(checkpoint)!r}" if checkpoint else "The model"
                    self.model.check_inputs(self.datamodule, what)  # type: ignore[union-attr]
                    self.model.check_data(self.datamodule)  # type: ignore[union-attr]
            except (ValueError, TypeError, FileNotFoundError) as err:
                parser.error(_cli_message(err))
        if self.subcommand == "unlearn":
            extra = {}
            if self._get(self.config, "trainer").get("max_epochs") is None:  # the method's budget ends the run
                runs_to_budget = self.model.runs_to_budget()  # type: ignore[union-attr]
                extra["max_epochs"] = -1 if runs_to_budget else max(int(self.model.hparams.max_epochs), 1)
            from lightning_unlearn.api import quiet

            with quiet(bool(self.config["unlearn"].get("verbose"))):  # the hardware banner comes from the Trainer's start
                self.trainer = self.instantiate_trainer(**extra)
        elif self.subcommand == "evaluate":
            from lightning_unlearn.api import quiet

            try:
                with quiet():
                    self.trainer = self.instantiate_trainer(**EVALUATE_TRAINER_FIXED)
            except (ValueError, RuntimeError, MisconfigurationException) as err:  # e.g. an accelerator not here
                self._parser("evaluate").error(str(err).strip().splitlines()[0])
            if self.trainer.world_size > 1 or self.trainer.num_devices > 1:
                self._parser("evaluate").error(
                    f"`--trainer.devices` must select one device: evaluate runs its passes in one process, got"
                    f" devices={self._get(self.config, 'trainer').get('devices')!r}."
                )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if self.subcommand not in CUSTOM_SUBCOMMANDS:
            return super().instantiate_trainer(**kwargs)
        # LightningCLI's, without its SaveConfigCallback: the run folder holds the config
        callbacks = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        config["callbacks"] = [*(config.get("callbacks") or []), *callbacks]
        if any(isinstance(cb, ModelCheckpoint) for cb in config["callbacks"]):  # checkpoints to resume from (--ckpt_path)
            config["enable_checkpointing"] = True
        return self.trainer_class(**config)

    # private override: LightningCLI runs `self.<subcommand>` or `trainer.<subcommand>` with `model` and
    # `datamodule` arguments; no public hook runs a subcommand that is not a Trainer method
    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand not in CUSTOM_SUBCOMMANDS:
            super()._run_subcommand(subcommand)
            return
        init = self.config_init[subcommand]
        kwargs = {k: v for k, v in init.items() if k in self._subcommand_method_arguments[subcommand]}
        if subcommand == "benchmark":
            try:
                run_benchmark(**kwargs)
            except BenchmarkArgumentError as err:  # raised before any work: a usage error, not a traceback
                self._parser("benchmark").error(str(err))
        else:
            getattr(self, f"run_{subcommand}")(**kwargs)
