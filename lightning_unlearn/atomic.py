"""Files and folders that are never seen half-written: written to a temporary sibling, then renamed.

The one place the package writes atomically: JSON records and manifests, torch files (unlearned
models, recordings) and whole run or report folders.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to: renamed to ``path`` when the block ends, removed if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half-written)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def publish_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished folder ``tmp`` to ``out`` (one rename); an existing ``out`` is replaced only when ``overwrite``.

    The temporary folder and its files get the permissions the user's umask gives new files.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for path in tmp.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"`output` {str(out)!r} exists; pass overwrite=True (--overwrite true) to replace it.")
        if _exchange(tmp, out):  # one atomic swap: at every instant `out` is the old run or the new one
            shutil.rmtree(tmp, ignore_errors=True)
            return
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, trash / out.name)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
