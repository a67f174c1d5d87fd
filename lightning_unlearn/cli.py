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

import contextlib
import copy
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, get_args, get_origin

from jsonargparse import DefaultHelpFormatter
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
import torch
from torch import nn

# (importing the package imports every method and callback: all selectable by class name)
from lightning_unlearn._version import __version__
from lightning_unlearn.api import check_resume_checkpoint
from lightning_unlearn.benchmark import BenchmarkArgumentError, publish_dir, run_benchmark
from lightning_unlearn.audit_record import AUDIT_FILE, write_audit_record
from lightning_unlearn.benchmark_store import check_output, output_lock
from lightning_unlearn.checkpoints import MODEL_FILE, load_unlearned
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.forget import ForgetSpec
from lightning_unlearn.methods import METHODS, get_method
from lightning_unlearn.methods.base import UnlearningMethod, check_model_inputs
from lightning_unlearn.methods.registry import available_methods
from lightning_unlearn.models.classifier import Classifier
from lightning_unlearn.models.networks import AllCNN, LeNet5
from lightning_unlearn.outputs import split_accuracies
from lightning_unlearn.serialization import check_file, load_trusted

DESCRIPTION = (
    "Machine unlearning for PyTorch Lightning classifiers: train the original model (fit), serve a deletion request"
    " with a registered method (unlearn), score the unlearned model (evaluate), compare every method (benchmark)."
)
LIGHTNING_SUBCOMMANDS: dict[str, str] = {
    "fit": "Train the original classifier (a Classifier on an UnlearningDataModule) with the Lightning Trainer.",
    "validate": "Run one validation epoch of a classifier with the Lightning Trainer.",
    "test": "Score a classifier on the data module's test split with the Lightning Trainer.",
}
CUSTOM_SUBCOMMANDS: dict[str, str] = {
    "unlearn": "Serve a deletion request: unlearn a trained classifier with a registered method.",
    "evaluate": "Evaluate an unlearned model against the original and the retrained reference.",
    "benchmark": "Run every registered method against Retrain and write a report folder (make demo).",
    "audit": "Per-example evidence of forgetting from a bank of models: U-LiRA, the NeurIPS 2023 score, KLOM.",
}
UNLEARN_TRAINER_DEFAULTS: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "max_epochs": None,
                                             "enable_model_summary": False}
EVALUATE_TRAINER_ARGS: tuple[str, ...] = ("accelerator", "devices", "precision")
EVALUATE_TRAINER_DEFAULTS: dict[str, Any] = {"devices": 1}
EVALUATE_TRAINER_FIXED: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                                          "enable_model_summary": False}
NETWORKS: tuple[type[nn.Module], ...] = (LeNet5, AllCNN)
"""The package's networks, listed in ``--help`` where an argument takes any ``nn.Module``."""
load_classifier = load_unlearned  # the loader's earlier name, kept importable from here


def resolve_method_args(args: list[str]) -> list[str]:
    """Replace a registered method name after ``--method`` by the class's import path.

    ``--method suli`` and ``--method=SULI`` become ``--method lightning_unlearn.methods.su.SULI``;
    class paths, YAML/JSON values and file names are left alone.

    Raises:
        ValueError: for a name that is not registered (the message lists the registered names).
    """
    out = list(args)
    for i, token in enumerate(out):
        if token == "--method" and i + 1 < len(out):
            out[i + 1] = _resolve_name(out[i + 1])
        elif token.startswith("--method="):
            out[i] = "--method=" + _resolve_name(token.split("=", 1)[1])
    return out


def _resolve_name(value: str) -> str:
    if any(c in value for c in ".{}:/ ") or value.startswith("-") or Path(value).exists():
        return value
    cls = get_method(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _root_cause(message: str) -> str:
    """The class's own message out of jsonargparse's "Does not validate against any of the Union subtypes" wrapper."""
    causes = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ") and "NoneType" not in line]
    return causes[0] if "Union subtypes" in message and causes else message


def _classes_in(typehint: Any) -> list[type]:
    """The classes named by a type hint (``Optional[X]``, ``X | Literal[...]``, ``Union[X, Y]`` ...)."""
    if isinstance(typehint, type) and get_origin(typehint) is None:  # a class, not ``list[int]``
        return [typehint]
    return [cls for arg in get_args(typehint) for cls in _classes_in(arg)]


def _short_class_list(typehint: Any) -> str | None:
    """The classes ``--help`` lists for an argument of this type, or ``None`` to keep jsonargparse's list.

    An argument that takes any ``nn.Module`` would list every layer of torch, and one that takes an
    :class:`UnlearningMethod` the package's internal bases: they list the package's networks and the
    registered methods instead. Parsing is unchanged: any subclass is accepted by class path.
    """
    classes = _classes_in(typehint)
    bases = [c for c in classes if issubclass(c, UnlearningMethod)]
    if bases:
        chosen = [cls for cls in METHODS.values() if issubclass(cls, tuple(bases))]
        names = sorted(cls.method_name for cls in chosen)  # type: ignore[attr-defined]
        return f", registered methods (any case): {', '.join(names)}; other subclasses by class path"
    if any(issubclass(c, nn.Module) and c.__module__.split(".")[0] in ("torch", "lightning") for c in classes):
        paths = [f"lightning_unlearn.models.{cls.__name__}" for cls in NETWORKS]
        return f", networks: {', '.join(paths)}; any other nn.Module subclass by class path"
    return None


class UnlearningHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter, with a short list of classes where the type's known subclasses
    would fill hundreds of lines (see :func:`_short_class_list`)."""

    def _get_help_string(self, action: Any) -> str:
        text = super()._get_help_string(action)
        extra_help = getattr(action, "extra_help", None)  # jsonargparse's typed arguments
        short = _short_class_list(getattr(action, "_typehint", None)) if callable(extra_help) else None
        if short is not None:
            known = extra_help()  # ", known subclasses: ..." as appended by the base class
            if known:
                text = text.replace(known, short)
        return text


class UnlearningArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose help uses :class:`UnlearningHelpFormatter` (also in ``--<key>.help CLASS``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", UnlearningHelpFormatter)
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------- one-line errors
_GROUPS: tuple[tuple[type, str], ...] = ((ForgetSpec, "--data.forget."), (UnlearningDataModule, "--data."),
                                         (UnlearningMethod, "--method."))


def _flag_prefix(err: BaseException) -> str | None:
    """The flag group (``--method.``, ``--data.``, ``--data.forget.``) of the object whose code raised ``err``.

    Read from the innermost frame, along the exception's chain, whose ``self`` is a method, a data
    module or a forget specification (their errors name the argument without the group).
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = None
        tb = current.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            found = next((prefix for cls, prefix in _GROUPS if isinstance(owner, cls)), found)
            tb = tb.tb_next
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _cli_message(err: BaseException) -> str:
    """``err``'s message for the command line: one line, the argument named by its flag (`lr` -> `--method.lr`)."""
    message = _root_cause(str(err)).strip()
    prefix = _flag_prefix(err)
    if prefix is not None:
        message = re.sub(r"^`(\w+)`", lambda m: f"`{prefix}{m.group(1)}`", message)
    return " ".join(message.split())


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value given to ``flag`` on the command line (``--flag value`` or ``--flag=value``), if any."""
    for i, token in enumerate(args):
        if token == flag and i + 1 < len(args):
            return args[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def _type_name(text: str) -> str:
    text = text.strip()
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    text = re.sub(r"typing\.Literal\[(.*)\]", r"one of [\1]", text)
    if text.startswith("dot import path string"):
        return "a class name or import path"
    return "None" if text == "NoneType" else text


def one_line_error(message: str) -> str:
    """jsonargparse's (often multi-line) parse error as one line naming the flag, what was expected and what was given.

    E.g. ``Parser key "method": ... Parser key "lr": Expected a <class 'float'>. Got value: nan`` (11 lines)
    becomes ```--method.lr`: expected float, got nan.``
    """
    lines = [line.strip() for line in message.strip().splitlines()]
    if not lines or not lines[0].startswith("Parser key"):
        required = re.match(r"the following arguments are required: (.+)", lines[0] if lines else "")
        if required:
            names = [f"`--{name.strip().split('.', 1)[-1]}`" for name in required.group(1).split(",")]
            return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} required."
        return " ".join(message.split())
    keys: list[str] = []
    cls = None
    expected: list[str] = []
    got = None
    for line in lines:
        item = line[2:] if line.startswith("- ") else line
        key = re.match(r'Parser key "([^"]+)":\s*(.*)', item)
        if key:
            keys.append(key.group(1))
            item = key.group(2)
            if not item:
                continue
        problem = re.match(r"Problem with given class_path '([^']+)'", item)
        if problem:
            cls = problem.group(1).rsplit(".", 1)[-1]
            continue
        option = re.match(r"Option '([^']+)' is not accepted", item)
        if option:
            return f"`--{'.'.join(keys)}.{option.group(1)}` is not an option of {cls or 'this class'}."
        inline = re.match(r"Expected a (.+?)\. Got value: (.*)", item)
        if inline:
            expected, got = [_type_name(inline.group(1))], inline.group(2)
            break
        alternative = re.match(r"Expected a (.+)", item)
        if alternative and not alternative.group(1).startswith("path but"):
            expected.append(_type_name(alternative.group(1).split(":")[0]))
            continue
        given = re.match(r"Given value: (.*)", item)
        if given and expected:
            got = given.group(1)
            break
        if item and not item.startswith(("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a path but")):
            expected, got = [], item  # another kind of message: keep it as it is
            break
    flag = f"`--{'.'.join(keys)}`"
    if not expected:
        return f"{flag}: {got}" if got else " ".join(message.split())
    wanted = " or ".join(dict.fromkeys(expected))
    return f"{flag}: expected {wanted}, got {got}."


class _OneLineParser(UnlearningArgumentParser):
    """A parser whose usage errors are one line on stderr (``<prog>: error: <message>``), exit code 2."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        from jsonargparse._common import debug_mode_active

        if not self.exit_on_error or debug_mode_active():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        required = re.match(r"the following arguments are required: (\w+)\.", message)
        if parser is self and required and required.group(1) in UnlearningCLI.subcommands():
            prog = f"{prog} {required.group(1)}"  # a missing argument of a subcommand, reported by the root parser
        sys.stderr.write(f"{prog}: error: {one_line_error(message)}\n")
        self.exit(2)


class UnlearningCLI(LightningCLI):
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
            self._subcommand_parsers[subcommand] = subcommand_parser
            parser_subcommands.add_subcommand(subcommand, subcommand_parser, help=description)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument(
                "--output", type=Optional[str], default=None,
                help="Write the final checkpoint here after fit (after every callback's fit-end work, e.g. the"
                " PrototypeRecorder's Gram pass): the original model for `unlearn --method.checkpoint`.",
            )
        return parser

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
            self._check_evaluate_output(self.config["evaluate"])
            return
        if self.subcommand != "unlearn":
            return
        config = self.config["unlearn"]
        parser = self._parser("unlearn")
        if str(config["method"]["class_path"]).rsplit(".", 1)[-1] == UnlearningMethod.__name__:  # no --method given
            parser.error(f"`--method` is required: a registered method ({', '.join(available_methods())}) or the"
                         " class path of an UnlearningMethod subclass.")
        init_args = config["method"]["init_args"]
        if init_args.get("checkpoint") is None:  # without it, a freshly initialised network would be "unlearned"
            parser.error("`--method.checkpoint` is required: the original model, e.g. the checkpoint written by"
                         " `lightning-unlearn fit --output` (with `--method.model` for a network not built by name).")
        data_args = (config.get("data") or {}).get("init_args", config.get("data")) or {}
        inputs = {"--method.checkpoint": init_args.get("checkpoint"), "--data.manifest": data_args.get("manifest"),
                  "--data.root": data_args.get("root"), "--ckpt_path": config.get("ckpt_path")}
        recording = init_args.get("recording")
        if isinstance(recording, (str, os.PathLike)):
            inputs["--method.recording"] = recording
        try:  # never destroy anything but an earlier run folder, and never an input
            check_output(Path(config["output"]), bool(config["overwrite"]), inputs)
        except (ValueError, FileExistsError) as err:
            parser.error(str(err))
        checkpoint = init_args.get("checkpoint")
        if checkpoint is not None:
            try:
                check_file(checkpoint, "--method.checkpoint")
            except OSError as err:
                parser.error(str(err))
        given = _flag_value(getattr(self, "_raw_args", []), "--method.recording")
        if given is not None and Path(given).is_file() and recording != given:
            # jsonargparse reads a recording path as a config file first (an empty file became `None`): read it here
            try:
                load_trusted(given, "--method.recording")
            except (OSError, ValueError) as err:
                parser.error(str(err))
        trainer_args = config.get("trainer") or {}
        for key in ("max_epochs", "max_steps"):
            if trainer_args.get(key) == 0:
                parser.error(f"`--trainer.{key}` 0 runs no training step: the model would be written unchanged. Leave it"
                             " unset (the method's budget or the request ends the run) or give a value >= 1.")
        if config.get("ckpt_path") is not None:
            try:
                check_resume_checkpoint(config["ckpt_path"], "--ckpt_path")
            except (OSError, ValueError) as err:
                parser.error(str(err))

    def _check_evaluate_output(self, config: Any) -> None:
        """``evaluate --output`` writes a JSON report: never over an input, a folder or a file that is not JSON."""
        output = config.get("output")
        if output is None:
            return
        out = Path(output)
        data = (config.get("data") or {}).get("init_args", config.get("data")) or {}
        inputs = {"--unlearned": config.get("unlearned"), "--original": config.get("original"),
                  "--reference": config.get("reference"), "--data.manifest": data.get("manifest")}
        parser = self._parser("evaluate")
        for flag, value in inputs.items():
            if value is None:
                continue
            path = Path(value) / MODEL_FILE if Path(value).is_dir() else Path(value)
            if out.resolve() == path.resolve():
                parser.error(f"`--output` {output!r} is the input `{flag}` {str(value)!r}: writing the report there would"
                             " replace it. Choose another file (e.g. report.json).")
        if out.is_dir():
            parser.error(f"`--output` {output!r} is a folder: give the JSON file to write (e.g. {str(out / 'report.json')!r}).")
        if out.is_file():
            try:
                json.loads(out.read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                parser.error(f"`--output` {output!r} is an existing file that is not a JSON report: writing the report"
                             " there would replace it. Choose another file.")

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

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        if self.subcommand in CUSTOM_SUBCOMMANDS:  # the run folder holds the config; no SaveConfigCallback
            config = dict(config)
            config["callbacks"] = [*(config.get("callbacks") or []), *callbacks]
            if any(isinstance(cb, ModelCheckpoint) for cb in config["callbacks"]):  # checkpoints to resume from (--ckpt_path)
                config["enable_checkpointing"] = True
            return self.trainer_class(**config)
        return super()._instantiate_trainer(config, callbacks)

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

    # ---------------------------------------------------------------- unlearn
    def run_unlearn(self, output: str = "unlearned", overwrite: bool = False, evaluate: bool = False,
                    ckpt_path: Optional[str] = None, verbose: bool = False) -> Path | None:
        """Fit the method, then write the run folder (rank 0 only).

        Args:
            output: the run folder (``model.pt``, ``config.yaml``, ``manifest.json``, ``metrics.json``,
                ``audit.json`` (the deletion audit record, see :mod:`lightning_unlearn.audit_record`),
                ``outcome.json`` (the request's target, whether reached, steps, wall time, accuracies
                before/after, guard events) and ``targets.pt`` for methods trained on per-sample targets).
            overwrite: replace an existing run folder.
            evaluate: also score the unlearned model with :func:`lightning_unlearn.evaluation.evaluate`
                (against the original model) into ``report.json``.
            ckpt_path: resume an interrupted run from a checkpoint it wrote (with the same arguments and a
                ``--trainer.callbacks ModelCheckpoint``); it ends with the weights of an uninterrupted run.
            verbose: also print Lightning's start-up banners (hardware, tips); the outcome line, the progress
                bar and every warning are shown either way.
        """
        out = Path(output)
        check_output(out, overwrite, {})
        method: UnlearningMethod = self.model  # type: ignore[assignment]
        original = copy.deepcopy(method.unlearned_model).eval() if evaluate else None
        # One run per output folder: a second one fails here, before its training (the first process only:
        # the launcher's other processes carry LOCAL_RANK > 0 and write nothing).
        rank_zero = os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
        with contextlib.ExitStack() as stack:
            if rank_zero:
                try:
                    stack.enter_context(output_lock(out))
                except FileExistsError as err:  # another run is writing there: a usage error, before any work
                    self._parser("unlearn").error(str(err))
            from lightning_unlearn.api import quiet

            with quiet(verbose):
                return self._fit_and_write(method, out, overwrite, evaluate, original, ckpt_path)

    def _fit_and_write(self, method: UnlearningMethod, out: Path, overwrite: bool, evaluate: bool,
                       original: torch.nn.Module | None, ckpt_path: Optional[str] = None) -> Path | None:
        self.trainer.fit(method, datamodule=self.datamodule, ckpt_path=ckpt_path, weights_only=True)
        if not self.trainer.is_global_zero:
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            method.save_unlearned(tmp / MODEL_FILE)
            self.datamodule.save_manifest(tmp / "manifest.json")
            self._subcommand_parsers["unlearn"].save(
                self.config["unlearn"], tmp / "config.yaml", skip_none=False, overwrite=True, multifile=False
            )
            targets = getattr(method, "targets", None)
            if targets is not None and callable(getattr(targets, "state_dict", None)):  # per-sample targets, by dataset index
                torch.save(targets.state_dict(), tmp / "targets.pt")
            unlearned = method.unlearned_model.float().eval()
            summary = {"method": method.method_name, "runtime_s": method.runtime_s,
                       "accuracy": split_accuracies(unlearned, self.datamodule)}
            (tmp / "metrics.json").write_text(json.dumps(summary, indent=1))
            metrics = {"accuracy": summary["accuracy"]}  # and the evaluation, for the audit record
            if method.outcome is not None:  # what the run achieved: target, reached, steps, guard events, ...
                (tmp / "outcome.json").write_text(json.dumps(method.outcome.to_dict(), indent=1))
            if evaluate:
                from lightning_unlearn.evaluation import evaluate as evaluate_fn

                report = evaluate_fn(unlearned, self.datamodule, original=original)
                (tmp / "report.json").write_text(json.dumps(report.to_dict(), indent=1, default=str))
                metrics["report"] = report.to_dict()
            write_audit_record(tmp / AUDIT_FILE, method, tmp / MODEL_FILE, self.datamodule, metrics=metrics)
            publish_dir(tmp, out, overwrite)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        print(f"{method.method_name}: unlearned model written to {out / MODEL_FILE} ({method.runtime_s:.2f} s)")
        return out

    # ------------------------------------------------------------------ audit
    def run_audit(
        self,
        methods: list[str],
        bank_size: int = 8,
        model: str = "lenet5",
        max_epochs: int = 10,
        lr: float = 1e-3,
        seed: int = 0,
        retain_sample: int = 1000,
        cache_dir: str = ".lightning_unlearn/banks",
        output: Optional[str] = None,
    ) -> None:
        """Audit ``methods`` on the request of ``--data`` with per-example scores (see :func:`lightning_unlearn.audit`).

        Args:
            methods: registered method names, e.g. ``'[SU,NegGradPlus]'``.
            bank_size: K models of each kind (originals, unlearned, retrained), at least 8.
            model: the network of the originals and retrained models (``lenet5``, ``allcnn``, ``resnet18``).
            max_epochs: epochs of every original and retrained model.
            lr: learning rate of those trainings.
            seed: seed of the first model of each kind (model i uses ``seed + i``).
            retain_sample: D_r examples scored for retain-set privacy.
            cache_dir: where the bank is kept and resumed (keyed by the request, recipe, seeds and version).
            output: a folder for ``forgetting_audit.json`` and ``forgetting_audit.md`` (default: print only).
        """
        from lightning_unlearn.api import quiet
        from lightning_unlearn.forgetting_audit import audit

        try:
            names = [get_method(name).method_name for name in methods]
        except ValueError as err:
            self._parser("audit").error(f"`--methods`: {err}")
        try:
            with quiet():
                report = audit(self.datamodule, names, bank_size=bank_size, model=model, max_epochs=max_epochs, lr=lr,
                               seed=seed, retain_sample=retain_sample, cache_dir=cache_dir, output=output)
        except (ValueError, TypeError) as err:  # checked before any training
            self._parser("audit").error(_cli_message(err))
        print(report["markdown"])

    # --------------------------------------------------------------- evaluate
    def run_evaluate(
        self,
        unlearned: str,
        original: str | None = None,
        reference: str | None = None,
        model: nn.Module | None = None,
        output: str | None = None,
    ) -> dict[str, Any]:
        """Score an unlearned model on the data module's splits.

        Args:
            unlearned: the unlearned model: a run folder or ``model.pt`` written by ``unlearn``.
            original: the original model (Classifier checkpoint), for parameter-change metrics.
            reference: the retrained reference (a run folder of ``unlearn --method Retrain``), for gaps.
            model: the network class (only for networks not built by name, e.g. ``lightning_unlearn.models.LeNet5``).
            output: write the report as JSON to this file (atomically).
        """
        from lightning_unlearn.data.datamodule import write_json_atomic
        from lightning_unlearn.evaluation import evaluate as evaluate_fn

        def load(path: str | None, argument: str) -> nn.Module | None:
            if path is None:
                return None
            try:
                loaded = load_classifier(path, copy.deepcopy(model) if model is not None else None, argument)
                check_model_inputs(loaded, self.datamodule.input_shape, self.datamodule.num_classes,
                                   f"The model of `{argument}` {path!r}")
                return loaded
            except (ValueError, FileNotFoundError, IsADirectoryError) as err:  # one line, exit code 2
                self._parser("evaluate").error(str(err))

        report = evaluate_fn(load(unlearned, "--unlearned"), self.datamodule, original=load(original, "--original"),
                             reference=load(reference, "--reference"), trainer=self.trainer)
        payload = report.to_dict()
        if output is not None:
            write_json_atomic(output, json.loads(json.dumps(payload, default=str)))
        print(json.dumps(payload, indent=1, default=str))
        return payload


def main(args: ArgsType = None) -> None:
    """Entry point of the ``lightning-unlearn`` console script."""
    UnlearningCLI(args=args)


if __name__ == "__main__":
    main()


__all__ = ["UnlearningCLI", "load_classifier", "main", "resolve_method_args"]
