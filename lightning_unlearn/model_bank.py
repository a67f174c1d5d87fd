"""A seeded, cached bank of models for per-example audits: K originals, their unlearned versions, K retrained.

Per-example scores (U-LiRA, the NeurIPS 2023 score, KLOM) compare, for every example, the
*distribution* of a model's output over training randomness: they need K models of each kind,
not one. A :class:`ModelBank` trains them through the project's own Trainer paths
(:func:`~lightning_unlearn.api.train_classifier` for the originals,
:func:`~lightning_unlearn.api.unlearn` for the unlearned and the retrained models) and keeps, for
every model, its weights and its per-example outputs on D_f, a seeded sample of D_r and D_t.

The bank lives in a folder keyed by a hash of everything that determines the models: the
manifest (the request's indices), the recipe, K, the seeds, the library version (and, per method,
the method and its options). Every file is written atomically and read with
``weights_only=True``; a run that stops is resumed where it stopped.

Example:
    >>> from lightning_unlearn import ClassForget, UnlearningDataModule
    >>> dm = UnlearningDataModule("digits", forget=ClassForget(0))
    >>> bank = ModelBank(dm, "/tmp/bank-doc", k=3, max_epochs=1)  # doctest: +SKIP
    >>> bank.outputs("retrained")["forget"]["phi"].shape  # doctest: +SKIP
    torch.Size([3, 180])
"""

from __future__ import annotations

import hashlib
import json
import inspect
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import seed_everything
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from lightning_unlearn._version import __version__
from lightning_unlearn.atomic import save_atomic, write_json_atomic
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.metrics.functional.per_example import logit_margin, logit_scaled_confidence
from lightning_unlearn.methods.registry import get_method
from lightning_unlearn.outputs import predict
from lightning_unlearn.serialization import load_trusted, plain

BANK_SPLITS = ("forget", "retain", "test")
KINDS = ("original", "retrained", "unlearned")
_KEY_FILE = "bank.json"


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(plain(payload), sort_keys=True, default=repr).encode()).hexdigest()


def manifest_hash(datamodule: UnlearningDataModule) -> str:
    """SHA-256 of the data module's manifest (dataset, seeds, forget spec and every split's indices)."""
    return _hash(datamodule.manifest_dict())


class BankMismatchError(ValueError):
    """The folder holds a bank built for another request, recipe, K or library version."""


class ModelBank:
    """K originals, their unlearned versions under a method, and K retrained models, cached on disk.

    Args:
        datamodule: the request (its manifest identifies it).
        directory: the bank's folder. A folder that already holds a bank must hold *this* bank (same
            key), else :class:`BankMismatchError`; ``None``: ``cache_dir/<key prefix>``.
        k: models of each kind (>= 2; the NeurIPS score needs >= 3).
        model: the architecture (a network name of :func:`~lightning_unlearn.train_classifier`).
        max_epochs, lr: the training recipe of the originals and of the retrained models.
        seed: original ``i`` is trained with seed ``seed + i``, retrained model ``i`` with ``seed + i``
            too (a fresh initialisation, see :class:`~lightning_unlearn.Retrain`), unlearned model ``i``
            is original ``i`` under the method with seed ``seed + i``.
        retain_sample: how many D_r examples the per-example outputs cover (a seeded draw).
        cache_dir: where keyed folders go when ``directory`` is None.
        trainer_kwargs: extra Trainer arguments for every training run (accelerator, precision, ...).
        originals: how many distinct originals; must equal ``k`` (a single original makes the unlearned
            distribution degenerate for a method without randomness, see the error).
    """

    def __init__(
        self,
        datamodule: UnlearningDataModule,
        directory: str | os.PathLike | None = None,
        k: int = 8,
        model: str = "lenet5",
        max_epochs: int = 10,
        lr: float = 1e-3,
        seed: int = 0,
        retain_sample: int = 1000,
        cache_dir: str | os.PathLike = ".lightning_unlearn/banks",
        trainer_kwargs: dict[str, Any] | None = None,
        originals: int | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(k, int) or k < 2:
            raise ValueError(
                f"`k` (models of each kind) must be an int >= 2, got {k!r}: per-example scores compare distributions over"
                " models, and one model per kind gives no distribution."
            )
        if originals is not None and originals != k:
            raise ValueError(
                f"`originals` must equal `k` ({k}), got {originals}: with fewer originals than unlearned models, the"
                " unlearned models of one original differ only by the method's seed, and a method without randomness"
                " (e.g. PS, NaivePS) returns the same model every time, a degenerate (point-mass) distribution that any"
                " per-example attack separates from the retrained models. Train K originals (different training seeds)."
            )
        if not isinstance(retain_sample, int) or retain_sample < 1:
            raise ValueError(f"`retain_sample` must be an int >= 1, got {retain_sample!r}.")
        self.datamodule, self.k, self.model_name = datamodule, k, model
        self.max_epochs, self.lr, self.seed, self.retain_sample = max_epochs, lr, seed, retain_sample
        self.trainer_kwargs, self.verbose = dict(trainer_kwargs or {}), verbose
        self.key_payload = {
            "manifest": manifest_hash(datamodule),
            "recipe": {"model": model, "max_epochs": max_epochs, "lr": lr},
            "k": k,
            "seeds": [seed + i for i in range(k)],
            "retain_sample": retain_sample,
            "trainer_kwargs": {n: v for n, v in sorted(self.trainer_kwargs.items()) if n in ("precision", "accelerator")},
            "version": __version__,
        }
        self.key = _hash(self.key_payload)
        self.directory = Path(directory) if directory is not None else Path(cache_dir) / self.key[:16]
        self._check_key()

    # ------------------------------------------------------------------------------ key
    def _check_key(self) -> None:
        key_file = self.directory / _KEY_FILE
        if key_file.is_file():
            stored = json.loads(key_file.read_text())
            if stored.get("key") != self.key:
                theirs = stored.get("payload", {})
                differ = sorted(n for n in self.key_payload if plain(self.key_payload[n]) != theirs.get(n))
                raise BankMismatchError(
                    f"`directory` {str(self.directory)!r} holds a bank built for another {', '.join(differ) or 'key'}"
                    f" (its key {str(stored.get('key'))[:16]}, this request's {self.key[:16]}): use another folder."
                )
        else:
            write_json_atomic(key_file, {"key": self.key, "payload": plain(self.key_payload)})

    @staticmethod
    def method_key(method: str, options: dict[str, Any]) -> str:
        return _hash({"method": method.lower(), "options": options})[:16]

    # ------------------------------------------------------------------------------ building
    def _classifier(self) -> Any:
        from lightning_unlearn.models.classifier import Classifier

        dm = self.datamodule
        return Classifier(self.model_name, dm.num_classes, dm.input_shape, lr=self.lr)

    def _load_model(self, path: Path) -> Any:
        model = self._classifier()
        model.load_state_dict(load_trusted(path, "model bank file"))
        return model.eval()

    def _folder(self, kind: str, method: str | None = None, options: dict[str, Any] | None = None) -> Path:
        if kind == "unlearned":
            if method is None:
                raise ValueError("`method` is required for the unlearned models.")
            return self.directory / f"unlearned-{method.lower()}-{self.method_key(method, options or {})}"
        return self.directory / kind

    def _retain_loader(self) -> DataLoader:
        dm = self.datamodule
        dataset = dm.split_dataset("retain")
        n = len(dataset)  # type: ignore[arg-type]
        g = torch.Generator().manual_seed(self.seed)
        positions = torch.randperm(n, generator=g)[: min(self.retain_sample, n)].sort().values.tolist()
        return DataLoader(Subset(dataset, positions), batch_size=dm.eval_batch_size)

    def _record(self, model: Any) -> dict[str, Any]:
        """Per-example outputs of ``model`` on each bank split (compact dtypes)."""
        record: dict[str, Any] = {}
        for split in BANK_SPLITS:
            loader = self._retain_loader() if split == "retain" else self.datamodule.dataloader(split)
            out = predict(model, loader)
            record[split] = {
                "phi": logit_scaled_confidence(out.logits, out.labels).float(),
                "margin": logit_margin(out.logits, out.labels).float(),
                "probs": out.logits.double().softmax(1).half(),
                "labels": out.labels,
                "indices": out.indices,
                "accuracy": out.accuracy,
            }
        return record

    def _build(self, kind: str, i: int, method: str | None = None, options: dict[str, Any] | None = None) -> None:
        from lightning_unlearn.api import train_classifier, unlearn

        folder = self._folder(kind, method, options)
        weights, outputs = folder / f"model_{i}.pt", folder / f"outputs_{i}.pt"
        recording = self._folder("original") / f"recording_{i}.pt"
        if weights.is_file() and outputs.is_file() and (kind != "original" or recording.is_file()):
            return
        seed = self.seed + i
        dm = self.datamodule
        if kind == "original":  # recorded (W0 and the Gram matrix) for the methods that need the original training's record
            from lightning_unlearn.callbacks.prototype_recorder import PrototypeRecorder

            recorder = PrototypeRecorder()
            trainer_kwargs = {**self.trainer_kwargs, "callbacks": [*self.trainer_kwargs.get("callbacks", []), recorder]}
            model = train_classifier(dm, self.model_name, max_epochs=self.max_epochs, lr=self.lr, seed=seed,
                                     verbose=self.verbose, **trainer_kwargs)
            recorder.export(recording)  # atomic
        else:
            original = self._load_model(self._folder("original") / f"model_{i}.pt")
            seed_everything(seed, workers=True, verbose=False)
            if kind == "retrained":
                model = unlearn(original, dm, method="retrain", trainer_kwargs=self.trainer_kwargs, verbose=self.verbose,
                                max_epochs=self.max_epochs, lr=self.lr, seed=seed, target=None, guard=None)
            else:
                options = dict(options or {})
                if "recording" in inspect.signature(get_method(method)).parameters:  # type: ignore[arg-type]
                    options.setdefault("recording", str(recording))  # a fresh copy per run: NaivePS updates it in place
                model = unlearn(original, dm, method=method, trainer_kwargs=self.trainer_kwargs,  # type: ignore[arg-type]
                                verbose=self.verbose, **{"seed": seed, **options})
        model = model.eval()
        save_atomic(model.state_dict(), weights)
        save_atomic(self._record(model), outputs)

    def build(self, method: str | None = None, **options: Any) -> ModelBank:
        """Train (or find on disk) the originals, the retrained models and, with ``method``, the unlearned ones."""
        for i in range(self.k):
            self._build("original", i)
        for i in range(self.k):
            self._build("retrained", i)
        if method is not None:
            folder = self._folder("unlearned", method, options)
            write_json_atomic(folder / "method.json", {"method": method, "options": plain(options)})
            for i in range(self.k):
                self._build("unlearned", i, method, options)
        return self

    # ------------------------------------------------------------------------------ reading
    def outputs(self, kind: str, method: str | None = None, **options: Any) -> dict[str, dict[str, Any]]:
        """The stacked per-example outputs of the K models of ``kind``: per split ``phi``/``margin`` ``(K, N)``,
        ``probs`` ``(K, N, C)``, ``labels``/``indices`` ``(N,)`` and ``accuracy`` ``(K,)``; builds what is missing."""
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
        if kind == "unlearned":
            self.build(method, **options)
        else:
            self.build()
        folder = self._folder(kind, method, options)
        records = [load_trusted(folder / f"outputs_{i}.pt", "model bank outputs") for i in range(self.k)]
        stacked: dict[str, dict[str, Any]] = {}
        for split in BANK_SPLITS:
            parts = [r[split] for r in records]
            for r in parts[1:]:
                if not torch.equal(r["indices"], parts[0]["indices"]):
                    raise BankMismatchError(f"The bank's {kind} models were evaluated on different {split} examples.")
            stacked[split] = {
                "phi": torch.stack([r["phi"] for r in parts]),
                "margin": torch.stack([r["margin"] for r in parts]),
                "probs": torch.stack([r["probs"] for r in parts]),
                "labels": parts[0]["labels"],
                "indices": parts[0]["indices"],
                "accuracy": torch.tensor([float(r["accuracy"]) for r in parts], dtype=torch.float64),
            }
        return stacked

    def models(self, kind: str, method: str | None = None, **options: Any) -> list[Any]:
        """The K models of ``kind`` (loaded from the bank; built first if missing)."""
        self.outputs(kind, method, **options)
        folder = self._folder(kind, method, options)
        return [self._load_model(folder / f"model_{i}.pt") for i in range(self.k)]


def stack_phi(outputs: dict[str, dict[str, Any]], split: str, statistic: str = "phi") -> Tensor:
    """``outputs[split][statistic]`` as float64 ``(K, N)``."""
    return outputs[split][statistic].double()


__all__ = ["BANK_SPLITS", "BankMismatchError", "ModelBank", "manifest_hash", "stack_phi"]
