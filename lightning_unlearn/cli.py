"""The ``lightning-unlearn`` command line, built on :class:`~lightning.pytorch.cli.LightningCLI`.

Subcommands::

    lightning-unlearn --version # prints ``lightning-unlearn <version>``
    lightning-unlearn fit       # train the original Classifier on an UnlearningDataModule (standard LightningCLI)
    lightning-unlearn validate  # / test: standard LightningCLI
    lightning-unlearn unlearn   # serve a deletion request with a registered method, write the unlearned model
    lightning-unlearn evaluate  # score an unlearned model (accuracies, MIA, gaps to a reference)
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
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
import torch
from torch import nn

import lightning_unlearn.callbacks  # noqa: F401  (callbacks selectable by class name)
import lightning_unlearn.methods  # noqa: F401  (every method selectable by class name)
from lightning_unlearn._version import __version__
from lightning_unlearn.benchmark import BenchmarkArgumentError, publish_dir, run_benchmark
from lightning_unlearn.audit_record import AUDIT_FILE, write_audit_record
from lightning_unlearn.benchmark_store import check_output, output_lock
from lightning_unlearn.checkpoints import MODEL_FILE, load_unlearned
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import get_method
from lightning_unlearn.models.classifier import Classifier
from lightning_unlearn.outputs import split_accuracies
from lightning_unlearn.serialization import check_file

CUSTOM_SUBCOMMANDS: dict[str, str] = {
    "unlearn": "Serve a deletion request: unlearn a trained classifier with a registered method.",
    "evaluate": "Evaluate an unlearned model against the original and the retrained reference.",
    "benchmark": "Run every registered method against Retrain and write a report folder (make demo).",
}
UNLEARN_TRAINER_DEFAULTS: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "max_epochs": None}
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
        kwargs.setdefault("parser_kwargs", {"prog": "lightning-unlearn", "version": __version__})
        super().__init__(args=args, run=run, **kwargs)

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
                description = (getattr(Trainer, subcommand).__doc__ or "").strip().splitlines()[0]
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
            parser.add_lightning_class_args(UnlearningDataModule, "data")
            added = parser.add_method_arguments(type(self), f"run_{subcommand}", skip={"self"})
        self._subcommand_method_arguments[subcommand] = added
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        if args is not None and not isinstance(args, list):  # a dict or Namespace
            super().parse_arguments(parser, args)
            return
        raw = list(sys.argv[1:] if args is None else args)
        try:
            resolved = resolve_method_args(raw)
        except ValueError as err:
            target = self._subcommand_parsers.get(raw[0], parser) if raw else parser
            target.error(str(err))
        self.config = parser.parse_args(resolved)

    # ----------------------------------------------------------- instantiation
    def before_instantiate_classes(self) -> None:
        """Fail fast, before any work, on an existing output folder or a checkpoint that does not exist."""
        if self.subcommand != "unlearn":
            return
        config = self.config["unlearn"]
        parser = self._parser("unlearn")
        init_args = config["method"]["init_args"]
        data_args = (config.get("data") or {}).get("init_args", config.get("data")) or {}
        inputs = {"--method.checkpoint": init_args.get("checkpoint"), "--data.manifest": data_args.get("manifest"),
                  "--data.root": data_args.get("root")}
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

    def instantiate_classes(self) -> None:
        if self.subcommand not in CUSTOM_SUBCOMMANDS:
            super().instantiate_classes()
            return
        try:
            self.config_init = self.parser.instantiate_classes(self.config)
        except (ValueError, TypeError, FileNotFoundError, IsADirectoryError) as err:  # errors raised by __init__
            self._parser(self.subcommand).error(_root_cause(str(err)))
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "method")
        self.trainer = None  # type: ignore[assignment]
        if self.subcommand == "unlearn":
            extra = {}
            if self._get(self.config, "trainer").get("max_epochs") is None:  # the method's budget ends the run
                runs_to_budget = self.model.runs_to_budget()  # type: ignore[union-attr]
                extra["max_epochs"] = -1 if runs_to_budget else max(int(self.model.hparams.max_epochs), 1)
            self.trainer = self.instantiate_trainer(**extra)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        if self.subcommand in CUSTOM_SUBCOMMANDS:  # the run folder holds the config; no SaveConfigCallback
            config = dict(config)
            config["callbacks"] = [*(config.get("callbacks") or []), *callbacks]
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
    def run_unlearn(self, output: str = "unlearned", overwrite: bool = False, evaluate: bool = False) -> Path | None:
        """Fit the method, then write the run folder (rank 0 only).

        Args:
            output: the run folder (``model.pt``, ``config.yaml``, ``manifest.json``, ``metrics.json``,
                ``audit.json`` (the deletion audit record, see :mod:`lightning_unlearn.audit_record`),
                ``outcome.json`` (the request's target, whether reached, steps, wall time, accuracies
                before/after, guard events) and ``targets.pt`` for methods trained on per-sample targets).
            overwrite: replace an existing run folder.
            evaluate: also score the unlearned model with :func:`lightning_unlearn.evaluation.evaluate`
                (against the original model) into ``report.json``.
        """
        out = Path(output)
        check_output(out, overwrite, {})
        method: UnlearningMethod = self.model  # type: ignore[assignment]
        original = copy.deepcopy(method.unlearned_model).eval() if evaluate else None
        # One run per output folder: a second one fails here, before its training (the first process only:
        # the launcher's other processes carry LOCAL_RANK > 0 and write nothing).
        rank_zero = os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
        with output_lock(out) if rank_zero else contextlib.nullcontext():
            return self._fit_and_write(method, out, overwrite, evaluate, original)

    def _fit_and_write(self, method: UnlearningMethod, out: Path, overwrite: bool, evaluate: bool,
                       original: torch.nn.Module | None) -> Path | None:
        self.trainer.fit(method, datamodule=self.datamodule)
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
        if method.outcome is not None:
            print(method.outcome.summary())
        print(f"{method.method_name}: unlearned model written to {out / MODEL_FILE} ({method.runtime_s:.2f} s)")
        return out

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
                return load_classifier(path, copy.deepcopy(model) if model is not None else None, argument)
            except (ValueError, FileNotFoundError, IsADirectoryError) as err:  # one line, exit code 2
                self._parser("evaluate").error(str(err))

        report = evaluate_fn(load(unlearned, "--unlearned"), self.datamodule, original=load(original, "--original"),
                             reference=load(reference, "--reference"))
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
