"""The deletion audit record: ``audit.json``, written next to every unlearned model.

What a data-protection request needs to show that a deletion was carried out: which samples were
deleted (by hash, so the record can be published without the indices), from which model (by file
hash), by which method with which options, what the run achieved, and with which software.

Fields (format ``version`` 1):

- ``created_utc``: when the record was written (ISO 8601, UTC).
- ``method``: ``name``, ``class`` (import path) and ``options`` (the method's hyper-parameters).
- ``forget``: ``dataset``, ``spec`` (the forget specification), ``size`` (number of deleted training
  samples), ``indices_sha256`` (SHA-256 of the forget indices, sorted ascending and written as a
  compact JSON list, e.g. ``[3,17,42]``), ``manifest_sha256`` (SHA-256 of the whole manifest written
  as compact JSON with sorted keys: ``json.dumps(manifest, sort_keys=True, separators=(",", ":"))``)
  and, when the split was read from a manifest file, ``manifest_file`` (its path and SHA-256).
- ``original``: the original checkpoint's ``path`` and file ``sha256`` (``null`` when the original was
  an object in memory, without a file).
- ``unlearned``: the unlearned model's ``file`` (relative to the record's folder), its ``sha256`` and
  size in ``bytes``.
- ``outcome``: the request's outcome (target, whether reached, steps, what stopped the run, wall time,
  accuracies before and after; see :class:`~lightning_unlearn.request.UnlearningOutcome`, without its
  check history); for a run without a request, ``steps`` and ``runtime_s`` only (``target``,
  ``reached`` and ``stopped_by`` are ``null``).
- ``metrics``: the evaluation, when one was made (``null`` otherwise).
- ``versions``: lightning-unlearn, torch, lightning, torchmetrics and Python.

The hashes can be checked with standard tools (``sha256sum model.pt``) and the forget hash
recomputed from a ``manifest.json``::

    import hashlib, json
    manifest = json.load(open("runs/su/manifest.json"))
    canonical = json.dumps(sorted(manifest["indices"]["forget"]), separators=(",", ":"))
    print(hashlib.sha256(canonical.encode()).hexdigest())
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lightning_unlearn.atomic import write_json_atomic
from lightning_unlearn.serialization import plain

if TYPE_CHECKING:
    from lightning_unlearn.data.datamodule import UnlearningDataModule


class RecordedMethod(Protocol):
    """What the record reads of a method (an :class:`~lightning_unlearn.methods.base.UnlearningMethod`), so that
    this module, which the method's saving imports, does not import the method back."""

    method_name: str
    hparams: Any
    outcome: Any
    runtime_s: float
    global_step: int


AUDIT_FILE = "audit.json"
AUDIT_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), as ``sha256sum`` prints it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_sha256(value: Any) -> str:
    """The SHA-256 of ``value`` written as compact JSON with sorted keys (the same bytes on every machine)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def forget_digest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``size``, ``indices_sha256`` and ``manifest_sha256`` of a manifest (see the module's documentation)."""
    forget = sorted(int(i) for i in manifest["indices"]["forget"])
    return {
        "size": len(forget),
        "indices_sha256": canonical_sha256(forget),
        "manifest_sha256": canonical_sha256(_json_ready(manifest)),
    }


def library_versions() -> dict[str, str]:
    """The versions of the software that served the request."""
    import lightning
    import torch
    import torchmetrics

    from lightning_unlearn._version import __version__

    return {"lightning-unlearn": __version__, "torch": str(torch.__version__), "lightning": lightning.__version__,
            "torchmetrics": torchmetrics.__version__, "python": platform.python_version()}


def audit_record(
    method: RecordedMethod,
    model_path: str | os.PathLike,
    datamodule: UnlearningDataModule,
    metrics: Any = None,
    record_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The audit record of an unlearning run whose model was saved at ``model_path`` (see the module's fields).

    Args:
        method: the method, after the run.
        model_path: the saved unlearned model.
        datamodule: the data module that held the deletion request.
        metrics: the evaluation (a dict, or an object with ``to_dict()`` such as
            :class:`~lightning_unlearn.evaluation.UnlearningReport`), if any.
        record_dir: the folder the record goes to (the model's ``file`` is given relative to it;
            default: the model's folder).
    """
    model_path = Path(model_path)
    manifest = datamodule.manifest_dict()
    forget: dict[str, Any] = {"dataset": manifest.get("dataset"), "spec": _json_ready(manifest.get("forget_spec")),
                              **forget_digest(manifest)}
    if datamodule.manifest is not None:
        forget["manifest_file"] = {"path": str(datamodule.manifest), "sha256": sha256_file(datamodule.manifest)}
    original = method.hparams.get("checkpoint")
    if method.outcome is not None:
        outcome = method.outcome.to_dict()
        outcome.pop("history", None)  # every check's accuracies: in outcome.json, not needed to attest the deletion
    else:  # a run without a request (target=None, guard=None): what the Trainer did
        outcome = {"target": None, "reached": None, "stopped_by": None, "steps": int(method.global_step),
                   "runtime_s": method.runtime_s}
    if metrics is not None and callable(getattr(metrics, "to_dict", None)):
        metrics = metrics.to_dict()
    return {
        "record": "lightning-unlearn deletion audit",
        "version": AUDIT_VERSION,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": {"name": method.method_name, "class": f"{type(method).__module__}.{type(method).__qualname__}",
                   "options": _json_ready(dict(method.hparams))},
        "forget": forget,
        "original": None if original is None else {
            "path": str(original), "sha256": sha256_file(original) if Path(original).is_file() else None},
        "unlearned": {"file": os.path.relpath(model_path, Path(record_dir or model_path.parent)),
                      "sha256": sha256_file(model_path), "bytes": model_path.stat().st_size},
        "outcome": _json_ready(outcome),
        "metrics": _json_ready(metrics),
        "versions": library_versions(),
    }


def write_audit_record(
    path: str | os.PathLike,
    method: RecordedMethod,
    model_path: str | os.PathLike,
    datamodule: UnlearningDataModule,
    metrics: Any = None,
) -> Path:
    """Write :func:`audit_record` to ``path`` as JSON (atomically) and return ``path``."""
    path = Path(path)
    write_json_atomic(path, audit_record(method, model_path, datamodule, metrics, record_dir=path.parent))
    return path


def _json_ready(value: Any) -> Any:
    """``value`` as JSON types: paths and enums as their values, anything else unknown as its ``str``."""
    return json.loads(json.dumps(plain(value), default=str))


__all__ = [
    "AUDIT_FILE",
    "AUDIT_VERSION",
    "audit_record",
    "canonical_sha256",
    "forget_digest",
    "library_versions",
    "sha256_file",
    "write_audit_record",
]
