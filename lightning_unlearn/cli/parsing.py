"""The command line's parser: registered method names after ``--method``, a short ``--help`` where a
type's known subclasses would fill hundreds of lines, and usage errors on one line."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser
from torch import nn

from lightning_unlearn.cli.messages import one_line_error
from lightning_unlearn.cli.subcommands import CUSTOM_SUBCOMMANDS, LIGHTNING_SUBCOMMANDS
from lightning_unlearn.methods import METHODS, get_method
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.models.networks import AllCNN, LeNet5

NETWORKS: tuple[type[nn.Module], ...] = (LeNet5, AllCNN)
"""The package's networks, listed in ``--help`` where an argument takes any ``nn.Module``."""


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


class _OneLineParser(UnlearningArgumentParser):
    """A parser whose usage errors are one line on stderr (``<prog>: error: <message>``), exit code 2."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        from jsonargparse._common import debug_mode_active

        if not self.exit_on_error or debug_mode_active():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        required = re.match(r"the following arguments are required: (\w+)\.", message)
        if parser is self and required and required.group(1) in (*LIGHTNING_SUBCOMMANDS, *CUSTOM_SUBCOMMANDS):
            prog = f"{prog} {required.group(1)}"  # a missing argument of a subcommand, reported by the root parser
        sys.stderr.write(f"{prog}: error: {one_line_error(message)}\n")
        self.exit(2)
