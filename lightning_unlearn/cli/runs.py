"""The package's own subcommands, run by :class:`~lightning_unlearn.cli.UnlearningCLI`: ``unlearn`` (fit
the method, then write the run folder), ``audit`` and ``evaluate``. Each ``run_<subcommand>``'s
signature and docstring are that subcommand's arguments and their ``--help``."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn

from lightning_unlearn.atomic import publish_dir
from lightning_unlearn.audit_record import AUDIT_FILE, write_audit_record
from lightning_unlearn.benchmark_store import check_output, output_lock
from lightning_unlearn.checkpoints import MODEL_FILE, load_unlearned
from lightning_unlearn.cli.messages import _cli_message
from lightning_unlearn.methods import get_method
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.checks import check_model_inputs
from lightning_unlearn.outputs import split_accuracies

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

    from lightning_unlearn.data.datamodule import UnlearningDataModule


class RunSubcommands:
    """``run_unlearn``, ``run_audit`` and ``run_evaluate``, mixed into :class:`~lightning_unlearn.cli.UnlearningCLI`
    (which builds their parsers from these signatures and runs them with its instantiated classes)."""

    trainer: Trainer
    datamodule: UnlearningDataModule
    model: Any
    config: Any

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
                loaded = load_unlearned(path, copy.deepcopy(model) if model is not None else None, argument)
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
