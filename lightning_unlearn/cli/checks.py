"""Checks of the package's subcommands that fail before any work, with a one-line usage error: an
output that must not be replaced (an input, a folder that is not a run), a checkpoint or file that
cannot be read, a Trainer budget that runs no step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser

from lightning_unlearn.api import check_resume_checkpoint
from lightning_unlearn.benchmark_store import check_output
from lightning_unlearn.checkpoints import MODEL_FILE
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import available_methods
from lightning_unlearn.serialization import check_file, load_trusted


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value given to ``flag`` on the command line (``--flag value`` or ``--flag=value``), if any."""
    for i, token in enumerate(args):
        if token == flag and i + 1 < len(args):
            return args[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def check_unlearn_inputs(config: Any, parser: LightningArgumentParser, raw_args: list[str]) -> None:
    """``unlearn``: a method and its checkpoint given, the output replaceable, every input readable."""
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
    given = _flag_value(raw_args, "--method.recording")
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


def check_evaluate_output(config: Any, parser: LightningArgumentParser) -> None:
    """``evaluate --output`` writes a JSON report: never over an input, a folder or a file that is not JSON."""
    output = config.get("output")
    if output is None:
        return
    out = Path(output)
    data = (config.get("data") or {}).get("init_args", config.get("data")) or {}
    inputs = {"--unlearned": config.get("unlearned"), "--original": config.get("original"),
              "--reference": config.get("reference"), "--data.manifest": data.get("manifest")}
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
