"""The package's one loader: files are read with ``torch.load(weights_only=True)``, never run.

A pickle can name any importable function and have the unpickler call it, so an unrestricted
``torch.load`` of an untrusted file runs whatever it asks for. Every file this package
reads (checkpoints, unlearned models, prototype recordings) goes through :func:`load_trusted`,
which only rebuilds tensors and plain Python containers. The package writes only such plain
types (see :func:`plain`), so no class of its own needs to be allow-listed.
"""

from __future__ import annotations

import enum
import io
import os
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

_NUMPY_MAGIC = b"\x93NUMPY"
# Globals that PyTorch's own (non-zip, legacy) format names and `weights_only` accepts.
_TORCH_PREFIXES = ("torch.", "collections.OrderedDict")
_PLAIN_SCALARS = (bool, int, float, str, bytes)


def check_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`Path` if it is an existing file.

    Args:
        path: the file.
        what: the argument that named it, quoted in the error (e.g. ``checkpoint``, ``--unlearned``).

    Raises:
        IsADirectoryError: if ``path`` is a directory.
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"`{what}` {str(path)!r} is a directory, expected a file written by torch.save.")
    if not path.is_file():
        raise FileNotFoundError(f"`{what}` {str(path)!r} does not exist.")
    return path


def load_trusted(path: str | os.PathLike, what: str) -> Any:
    """Load a file written by ``torch.save`` on the CPU, reading only tensors and plain containers.

    Nothing in the file is executed: ``torch.load(..., weights_only=True)`` refuses any object
    that would need a function call to rebuild, before calling anything.

    Args:
        path: the file.
        what: the argument that named it, quoted in every error (e.g. ``checkpoint``, ``--unlearned``).

    Raises:
        IsADirectoryError: if ``path`` is a directory.
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file holds objects that would run code on load (it names them), or
            is not a PyTorch checkpoint at all (empty, text, a NumPy array, a corrupt archive).

    Example:
        >>> import tempfile
        >>> file = tempfile.NamedTemporaryFile(suffix=".pt", delete=False).name
        >>> torch.save({"weight": torch.ones(2)}, file)
        >>> load_trusted(file, "checkpoint")["weight"]
        tensor([1., 1.])
    """
    path = check_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure of the restricted unpickler means: not a checkpoint we can read
        unsafe = _unsafe_globals(path, err)
        if unsafe:
            raise ValueError(
                f"`{what}` {str(path)!r} is not a trusted checkpoint: it contains objects that would run code on load"
                f" ({', '.join(unsafe[:3])}{', ...' if len(unsafe) > 3 else ''}); nothing was executed. Only tensors"
                " and plain containers are loaded: save the weights as a state dict (torch.save(model.state_dict()))."
            ) from None
        raise ValueError(
            f"`{what}` {str(path)!r} is not a PyTorch checkpoint{_what_it_is(path)}: expected a file written by"
            " torch.save (e.g. by `lightning-unlearn fit --output` or `unlearn`)."
        ) from None


def plain(value: Any) -> Any:
    """``value`` with paths, enums and NumPy scalars turned into the plain types :func:`load_trusted` reads.

    Containers are converted recursively; any other object becomes its ``repr``.

    Example:
        >>> plain({"checkpoint": Path("a.ckpt"), "splits": ("forget", "test")})
        {'checkpoint': 'a.ckpt', 'splits': ('forget', 'test')}
    """
    if value is None or isinstance(value, torch.Tensor) or type(value) in _PLAIN_SCALARS:
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if callable(getattr(value, "item", None)) and getattr(value, "shape", None) == ():  # NumPy scalar or 0-d array
        return value.item()
    for scalar in _PLAIN_SCALARS:  # subclasses, e.g. of str, become the type itself
        if isinstance(value, scalar):
            return scalar(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value) if type(value) in (list, tuple) else [plain(v) for v in value]
    return repr(value)


def tuples_as_lists(value: Any) -> Any:
    """``value`` with every tuple turned into a list, recursively (dict keys are kept).

    Hyper-parameters go through it before they are stored, so the ``hparams.yaml`` a logger writes is
    plain YAML (a tuple would be written as ``!!python/tuple``, which ``yaml.safe_load`` refuses).

    Example:
        >>> tuples_as_lists({"val_splits": ("forget", "test"), "shape": [(1, 8)]})
        {'val_splits': ['forget', 'test'], 'shape': [[1, 8]]}
    """
    if isinstance(value, dict):
        return type(value)((k, tuples_as_lists(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return [tuples_as_lists(v) for v in value]
    return value


# ---------------------------------------------------------------------------------- diagnosis
def _unsafe_globals(path: Path, err: Exception) -> list[str]:
    """The globals a refused file names that ``weights_only`` does not accept, read statically (never imported)."""
    found: set[str] = set()
    try:
        if zipfile.is_zipfile(path):
            found.update(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        else:
            found.update(g for g in _pickle_globals(path.read_bytes()) if not g.startswith(_TORCH_PREFIXES))
    except Exception:  # a file that cannot even be disassembled names nothing
        pass
    found.update(re.findall(r"GLOBAL (\S+) was not an allowed global", str(err)))
    return sorted(found)


def _pickle_globals(data: bytes) -> set[str]:
    """Every global named by the pickle(s) at the start of ``data`` (GLOBAL, INST, STACK_GLOBAL), by disassembly."""
    found: set[str] = set()
    pushed: list[Any] = []  # the values recent opcodes pushed: strings, else None
    memo: dict[int, Any] = {}
    stream = io.BytesIO(data)
    try:
        while stream.tell() < len(data):  # PyTorch's legacy format is several pickles in a row
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    found.add(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(pushed) >= 2 and all(isinstance(s, str) for s in pushed[-2:]):
                    found.add(f"{pushed[-2]}.{pushed[-1]}")
                if op.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = pushed[-1] if pushed else None
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(int(arg)))
                else:
                    pushed.append(arg if isinstance(arg, str) and op.name != "GLOBAL" else None)
    except Exception:  # the end of the pickles (tensor bytes follow in the legacy format) or not a pickle at all
        pass
    return found


def _what_it_is(path: Path) -> str:
    """A short note on what a file that is not a checkpoint looks like, for the error message."""
    with open(path, "rb") as fh:
        head = fh.read(len(_NUMPY_MAGIC))
    if not head:
        return " (the file is empty)"
    if head == _NUMPY_MAGIC:
        return " (it is a NumPy .npy file)"
    return ""


__all__ = ["check_file", "load_trusted", "plain", "tuples_as_lists"]
