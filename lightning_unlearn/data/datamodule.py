"""The data module of an unlearning run: D_f, D_r, D_t, D_tf, D_tr, D_new and D_ref."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, Subset

from lightning_unlearn.atomic import write_json_atomic  # noqa: F401  (also imported from here)
from lightning_unlearn.data.datasets import DatasetName, DatasetPair, IndexedDataset, _targets, load_dataset
from lightning_unlearn.data.forget import ClassForget, ForgetSpec, IndexForget
from lightning_unlearn.data.resumable import ResumableDataLoader

Split = Literal["train", "forget", "retain", "test", "test_forget", "test_retain", "new", "ref"]
SPLITS: tuple[str, ...] = ("train", "forget", "retain", "test", "test_forget", "test_retain", "new", "ref")
MANIFEST_VERSION = 1
DEFAULT_REF_FRACTION = 0.1
"""D_ref held out by default for sub-class, random and index requests (their target is measured on it)."""


def _first(values: np.ndarray, count: int = 5) -> str:
    """The first ``count`` entries of ``values`` and how many there are in all (for one-line errors)."""
    shown = np.asarray(values)[:count].tolist()
    return f"{shown}" + (f" (and {values.size - count} more, {values.size} in all)" if values.size > count else "")


class EpochRandomSampler(RandomSampler):
    """A RandomSampler whose order is a function of ``(seed, epoch)``.

    Lightning calls ``set_epoch`` at the start of every epoch, so a run resumed from a
    checkpoint sees the same batches as an uninterrupted one; in the middle of an epoch the
    :class:`~lightning_unlearn.data.resumable.ResumableDataLoader` that holds it restores how many
    batches were already taken. Under several processes, :func:`shard_for_processes` gives each
    its interleaved share of that order.
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self.seed + 1_000_003 * epoch)  # type: ignore[union-attr]


def shard_for_processes(sampler: Sampler) -> Sampler:
    """Under several processes, each takes every ``world``-th position of ``sampler``'s order.

    Lightning would otherwise wrap a training sampler in a ``DistributedSampler`` that re-shuffles
    its order with a seed of its own, so the processes' batches together held other samples than
    one process's batch. Interleaved shards of the same order keep them identical: with a
    per-process batch of ``batch / world``, the union of the processes' k-th batches is the single
    process's k-th batch (the last one of an epoch may repeat a sample, as ``DistributedSampler``
    pads). On one process ``sampler`` is returned as it is.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return sampler
    world = torch.distributed.get_world_size()
    if world == 1:
        return sampler
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    return DistributedSamplerWrapper(sampler, num_replicas=world, rank=torch.distributed.get_rank(), shuffle=False)


@dataclass(frozen=True)
class TrainingData:
    """What an unlearning method trains on: its declaration, from which the data module builds the loader.

    A method states it as its ``training_data`` property; :meth:`UnlearningDataModule.train_dataloader`
    serves it (through :meth:`UnlearningDataModule.training_loader`) when a Trainer fits the method.

    Attributes:
        splits: the split(s) of a training batch. One split: batches ``(x, y, index)``. Two: batches
            ``{split: (x, y, index)}`` of equal size, one shuffled loader per split held by Lightning's
            ``CombinedLoader`` (the Trainer injects its distributed samplers into each).
        epoch: with two splits, the split one epoch passes over once: the other is cycled when it is shorter
            and truncated (a random subset of its shuffled batches) when it is longer. ``None``: an epoch lasts
            as long as the longer split, and the exhausted one gives ``None`` (``CombinedLoader``'s ``"max_size"``).
        shuffle: seeded shuffling by ``(seed, epoch)``, resumable in the middle of an epoch; else split order.
        batch_size: the batch size (default: the data module's ``batch_size``, or its ``eval_batch_size`` when
            not shuffled).
        sampler: the order of a single split, as a function of the split's dataset returning a sampler (e.g.
            SULI's layer of the epoch); the loader is then resumable and sharded across processes like a
            shuffled one.

    Raises:
        ValueError: for no split, an unknown or repeated split, more than two splits, an ``epoch`` that is not
            one of two splits, or a ``sampler`` for several splits.

    Example:
        >>> TrainingData(("forget", "retain"), epoch="forget").splits
        ('forget', 'retain')
    """

    splits: tuple[str, ...] = ("forget",)
    epoch: str | None = None
    shuffle: bool = True
    batch_size: int | None = None
    sampler: Callable[[Dataset], Sampler] | None = None

    def __post_init__(self) -> None:
        splits = self.splits
        if isinstance(splits, str) or not 1 <= len(splits) <= 2 or len(set(splits)) != len(splits) or any(s not in SPLITS for s in splits):
            raise ValueError(f"`splits` must be one or two distinct split names among {list(SPLITS)}, got {splits!r}.")
        if self.epoch is not None and (len(splits) != 2 or self.epoch not in splits):
            raise ValueError(f"`epoch` must be None or one of two splits {list(splits)}, got {self.epoch!r}.")
        if self.sampler is not None and len(splits) != 1:
            raise ValueError(f"`sampler` orders a single split, but `splits` is {splits!r}.")


def _pair_of(datamodule: LightningDataModule) -> DatasetPair:
    """The training and held-out datasets of a user's ``LightningDataModule`` (see
    :meth:`UnlearningDataModule.from_datamodule`).

    Raises:
        TypeError: if it serves no map-style training dataset, or neither test nor validation data.
    """
    datamodule.prepare_data()
    datamodule.setup("fit")
    train_loader = datamodule.train_dataloader()
    train = getattr(train_loader, "dataset", None)
    name = type(datamodule).__name__
    if train is None or not hasattr(train, "__getitem__") or not hasattr(train, "__len__"):
        raise TypeError(f"`datamodule` {name} must serve a DataLoader over a map-style dataset from train_dataloader(),"
                        f" got {type(train_loader).__name__}.")
    test = None
    for stage, hook in (("test", "test_dataloader"), ("validate", "val_dataloader")):
        try:
            datamodule.setup(stage)
            test = getattr(getattr(datamodule, hook)(), "dataset", None)
        except MisconfigurationException:  # Lightning's default hook: the module defines no such loader
            continue
        if test is not None:
            break
    if test is None:
        raise TypeError(f"`datamodule` {name} serves neither test_dataloader() nor val_dataloader() over a dataset.")
    train_targets, test_targets = _targets(train), _targets(test)
    num_classes = int(max(train_targets.max(), test_targets.max())) + 1
    shape = tuple(torch.as_tensor(train[0][0]).shape)
    return DatasetPair(train, test, num_classes, shape, train_targets, test_targets)  # type: ignore[arg-type]


class UnlearningDataModule(LightningDataModule):
    """Serves every split of an unlearning run, seeded and deterministic.

    The training data is split once (seeded) into the training split proper and two
    optional held-out splits, D_new (a "future" split for relearning tests) and D_ref
    (a reference split for instance-wise stopping). The forget specification then picks
    D_f inside the training split; D_r is the rest of it. For class-wise forgetting the
    test set is further split into D_tf (forgotten classes) and D_tr (retained classes).

    Every batch is ``(x, y, index)`` with ``index`` the sample's index in its dataset
    (train or test), so metrics can drop the duplicates DistributedSampler pads in.

    When a Trainer fits an unlearning method with this data module, ``train_dataloader``
    serves what the method declares as its ``training_data`` (forget set, retain set, or both:
    see :class:`TrainingData`), and ``val_dataloader`` the splits it validates (each logged as
    ``val/<split>_acc``); the data module only reads these declarations, and the method reads
    the splits it needs for its own passes from its ``datamodule``. When it
    fits a plain classifier, ``train_dataloader`` serves the whole training split and
    ``val_dataloader`` the test split D_t, named by :attr:`val_split`: the data module holds out
    no validation split of its own (D_new and D_ref serve the relearning test and the targets of
    instance-wise requests), so a :class:`~lightning_unlearn.models.Classifier` logs its
    validation accuracy as ``val/test_acc``, not as the accuracy on unseen validation data.

    Args:
        dataset: a bundled dataset (``mnist5k``, ``digits``) or a torchvision one read from ``root``.
        forget: the deletion request (see :mod:`lightning_unlearn.data.forget`).
        root: folder of a torchvision dataset.
        download: let torchvision download the dataset (off by default).
        batch_size: training batch size.
        eval_batch_size: batch size of evaluation loaders.
        num_workers: DataLoader workers.
        seed: seed of the held-out splits (D_new, D_ref), of loader shuffling and, unless
            ``forget_seed`` is given, of the forget draw.
        forget_seed: seed of the forget draw of ``RandomForget``/``SubclassForget`` (default:
            ``seed``): vary the request while the held-out splits, and so the original's training
            data, stay fixed.
        split_seed: seed of the bundled datasets' stratified train/test split (``mnist5k``,
            ``digits``; a torchvision or custom dataset keeps its own split).
        new_fraction: fraction of the training data held out as D_new.
        ref_fraction: fraction of the training data held out as D_ref, the held-out data the target
            of a sub-class, random or index request is measured on. Default (``None``):
            :data:`DEFAULT_REF_FRACTION` for those requests, 0 for a class-wise one (whose target and
            guard need no D_ref).
        manifest: a JSON manifest to read the indices from (written by :meth:`save_manifest`).
        datamodule: the user's own ``LightningDataModule``: its datasets, with its transforms, are
            served instead of ``dataset`` (see :meth:`from_datamodule`). From the CLI:
            ``--data.datamodule my_package.MyDataModule --data.datamodule.init_args.<arg> ...``.

    Raises:
        ValueError: for fractions outside [0, 1) or a forget set that is empty, out of range,
            duplicated, outside the label space or equal to the whole training split.

    Example:
        >>> from lightning_unlearn.data import ClassForget
        >>> dm = UnlearningDataModule("mnist5k", forget=ClassForget(3), seed=0)
        >>> dm.setup()
        >>> len(dm.forget_indices), len(dm.retain_indices)
        (400, 3600)
    """

    val_split: str = "test"
    """The split ``val_dataloader`` serves a model that does not choose its own (a plain classifier); D_t by default."""

    def __init__(
        self,
        dataset: DatasetName = "mnist5k",
        forget: ForgetSpec | None = None,
        root: str | None = None,
        download: bool = False,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        seed: int = 0,
        forget_seed: int | None = None,
        split_seed: int = 0,
        new_fraction: float = 0.0,
        ref_fraction: float | None = None,
        manifest: str | None = None,
        datamodule: LightningDataModule | None = None,
    ) -> None:
        super().__init__()
        if forget is not None and not isinstance(forget, ForgetSpec):
            raise TypeError(f"`forget` must be a ForgetSpec (ClassForget, SubclassForget, ...), got {type(forget).__name__}.")
        if ref_fraction is None:
            ref_fraction = 0.0 if forget is None or isinstance(forget, ClassForget) else DEFAULT_REF_FRACTION
        for name, value in (("new_fraction", new_fraction), ("ref_fraction", ref_fraction)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
        if new_fraction + ref_fraction >= 1.0:
            raise ValueError(f"`new_fraction` + `ref_fraction` must be < 1, got {new_fraction + ref_fraction}.")
        for name, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                 ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        if forget is not None and not isinstance(forget, ForgetSpec):
            raise TypeError(f"`forget` must be a ForgetSpec (ClassForget, SubclassForget, ...), got {type(forget).__name__}.")
        if datamodule is not None and not isinstance(datamodule, LightningDataModule):
            raise TypeError(f"`datamodule` must be a LightningDataModule, got {type(datamodule).__name__}.")
        self.source_datamodule = datamodule
        self.dataset_name = dataset if datamodule is None else f"custom:{type(datamodule).__module__}.{type(datamodule).__qualname__}"
        self.forget = forget if forget is not None else ClassForget(0)
        self.root, self.download = root, download
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        for name, value in (("seed", seed), ("forget_seed", forget_seed), ("split_seed", split_seed)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
        self.seed, self.new_fraction, self.ref_fraction = seed, new_fraction, ref_fraction
        self.forget_seed = seed if forget_seed is None else forget_seed
        self.split_seed = split_seed
        self.manifest = manifest
        self._data: DatasetPair | None = None
        self.indices: dict[str, np.ndarray] = {}

    @classmethod
    def from_datasets(
        cls,
        train: Dataset,
        test: Dataset,
        forget: ForgetSpec,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> UnlearningDataModule:
        """Build the data module over the user's own map-style ``(x, y)`` datasets."""
        train_targets, test_targets = _targets(train), _targets(test)
        num_classes = num_classes or int(max(train_targets.max(), test_targets.max())) + 1
        shape = tuple(torch.as_tensor(train[0][0]).shape)
        dm = cls(dataset="custom", forget=forget, **kwargs)  # type: ignore[arg-type]
        dm._data = DatasetPair(train, test, num_classes, shape, train_targets, test_targets)  # type: ignore[arg-type]
        return dm

    @classmethod
    def from_datamodule(cls, datamodule: LightningDataModule, forget: ForgetSpec, **kwargs: Any) -> UnlearningDataModule:
        """Serve a request on the user's own ``LightningDataModule``: its datasets, with its transforms.

        The training data is the dataset of its ``train_dataloader()``; the held-out data the
        dataset of its ``test_dataloader()`` (of ``val_dataloader()`` when it has no test
        data). Dataset indices (``IndexForget``, manifests) are positions in that training
        dataset; the manifest records the data module's class. The loaders are this data
        module's (``batch_size``, ...), over those datasets. Same as
        ``UnlearningDataModule(datamodule=datamodule, forget=forget, ...)``.
        """
        return cls(forget=forget, datamodule=datamodule, **kwargs)

    # ------------------------------------------------------------------ set-up
    @property
    def data(self) -> DatasetPair:
        if self._data is None and self.source_datamodule is not None:
            self._data = _pair_of(self.source_datamodule)
        if self._data is None:
            self._data = load_dataset(self.dataset_name, self.root, self.download, split_seed=self.split_seed)
        return self._data

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.data.input_shape

    def setup(self, stage: str | None = None) -> None:
        if self.indices:
            return
        if self.manifest is not None:
            if not Path(self.manifest).is_file():  # a typo must not silently draw a fresh split
                raise FileNotFoundError(f"`manifest` {str(self.manifest)!r} is not a file: give the manifest.json of a run"
                                        " (written by save_manifest), or leave `manifest` unset to draw the split.")
            self.indices = self._read_manifest(self.manifest)
            return
        targets = self.data.train_targets
        n = targets.size
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)
        n_new, n_ref = int(round(self.new_fraction * n)), int(round(self.ref_fraction * n))
        if isinstance(self.forget, IndexForget):  # samples the request names are never held out
            requested = np.isin(perm, np.asarray(self.forget.indices, dtype=np.int64))
            perm = np.concatenate([perm[~requested], perm[requested]])
        new, ref, train = np.sort(perm[:n_new]), np.sort(perm[n_new : n_new + n_ref]), np.sort(perm[n_new + n_ref :])
        forget = self.forget.select(train, targets[train], self.num_classes, self.forget_seed)
        self.indices = {
            "train": train,
            "forget": forget,
            "retain": np.setdiff1d(train, forget, assume_unique=True),
            "new": new,
            "ref": ref,
            **self._test_split(),
        }

    def _test_split(self) -> dict[str, np.ndarray]:
        classes = self.forget.forget_classes
        if classes is None:
            return {}
        test_targets = self.data.test_targets
        in_forget = np.isin(test_targets, classes)
        return {"test_forget": np.flatnonzero(in_forget), "test_retain": np.flatnonzero(~in_forget)}

    def _require(self, split: str) -> np.ndarray:
        self.setup()
        if split == "test":
            return np.arange(len(self.data.test))  # type: ignore[arg-type]
        if split not in self.indices:
            if split in ("test_forget", "test_retain"):
                raise ValueError(
                    f"Split {split!r} (D_tf / D_tr) exists only for class-wise forgetting; the forget"
                    f" specification is {self.forget!r}."
                )
            raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
        return self.indices[split]

    @property
    def forget_indices(self) -> np.ndarray:
        return self._require("forget")

    @property
    def retain_indices(self) -> np.ndarray:
        return self._require("retain")

    @property
    def forget_classes(self) -> list[int] | None:
        return self.forget.forget_classes

    def has_split(self, split: str) -> bool:
        self.setup()
        return split == "test" or self.indices.get(split, np.empty(0)).size > 0

    # ------------------------------------------------------------- datasets/loaders
    def split_dataset(self, split: Split) -> Dataset:
        """The samples of ``split`` as a dataset of ``(x, y, index)``."""
        indices = self._require(split)
        base = self.data.test if split.startswith("test") else self.data.train
        if indices.size == 0:
            raise ValueError(f"Split {split!r} is empty; set the fraction that creates it (e.g. new_fraction, ref_fraction).")
        return Subset(IndexedDataset(base), indices.tolist())

    def split_targets(self, split: Split) -> np.ndarray:
        """Labels of the samples of ``split``, in loader order (unshuffled)."""
        indices = self._require(split)
        targets = self.data.test_targets if split.startswith("test") else self.data.train_targets
        return targets[indices]

    def dataloader(self, split: Split, shuffle: bool = False, batch_size: int | None = None, drop_last: bool = False) -> DataLoader:
        """A DataLoader over ``split``; shuffling is seeded by ``(seed, epoch)`` (see :class:`EpochRandomSampler`).

        A shuffled loader is a :class:`~lightning_unlearn.data.resumable.ResumableDataLoader`: a fit
        resumed from a checkpoint taken in the middle of an epoch continues that epoch's order where it stood.
        """
        dataset = self.split_dataset(split)
        order = EpochRandomSampler(dataset, self.seed) if shuffle else None
        return self._loader(dataset, order, batch_size or (self.batch_size if shuffle else self.eval_batch_size), drop_last)

    def _loader(self, dataset: Dataset, order: Sampler | None, batch_size: int, drop_last: bool = False) -> DataLoader:
        """A loader over ``dataset``: in ``order`` (sharded across processes, resumable), else in dataset order."""
        return (ResumableDataLoader if order is not None else DataLoader)(
            dataset,
            batch_size=batch_size,
            sampler=shard_for_processes(order) if order is not None else None,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def training_loader(self, data: TrainingData) -> Any:
        """The training loader a method declares (see :class:`TrainingData`): a loader over one split, or a
        ``CombinedLoader`` of two."""
        if data.sampler is not None:
            dataset = self.split_dataset(data.splits[0])  # type: ignore[arg-type]
            return self._loader(dataset, data.sampler(dataset), data.batch_size or self.batch_size)
        loaders = {s: self.dataloader(s, shuffle=data.shuffle, batch_size=data.batch_size) for s in data.splits}  # type: ignore[arg-type]
        if len(loaders) == 1:
            return loaders[data.splits[0]]
        if data.epoch is None:
            return CombinedLoader(loaders, mode="max_size")
        other = next(s for s in data.splits if s != data.epoch)
        return CombinedLoader(loaders, mode="max_size_cycle" if len(loaders[data.epoch]) >= len(loaders[other]) else "min_size")

    def forget_dataloader(self, shuffle: bool = True) -> DataLoader:
        return self.dataloader("forget", shuffle=shuffle)

    def retain_dataloader(self, shuffle: bool = True) -> DataLoader:
        return self.dataloader("retain", shuffle=shuffle)

    def _fitted_data(self) -> tuple[TrainingData, tuple[str, ...]] | None:
        """``(training_data, validated_splits)`` declared by the unlearning method the Trainer runs, else ``None``."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        data = getattr(module, "training_data", None)
        return (data, tuple(module.validated_splits)) if isinstance(data, TrainingData) else None  # type: ignore[union-attr]

    def train_dataloader(self) -> Any:
        """What the fitted unlearning method declares as its ``training_data``; the shuffled training split for a
        plain classifier."""
        declared = self._fitted_data()
        return self.training_loader(declared[0]) if declared is not None else self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> Any:
        """One loader per split the fitted unlearning method validates (its ``validated_splits``); the split
        :attr:`val_split` for a plain classifier."""
        declared = self._fitted_data()
        if declared is None:
            return self.dataloader(self.val_split)  # type: ignore[arg-type]
        return [self.dataloader(s) for s in declared[1]]  # type: ignore[arg-type]

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    # ------------------------------------------------------------------- manifest
    def manifest_dict(self) -> dict[str, Any]:
        self.setup()
        return {
            "version": MANIFEST_VERSION,
            "dataset": self.dataset_name,
            "num_train": int(len(self.data.train)),  # type: ignore[arg-type]
            "num_test": int(len(self.data.test)),  # type: ignore[arg-type]
            "seed": self.seed,
            "forget_seed": self.forget_seed,
            "split_seed": self.split_seed,
            "forget_spec": self.forget.to_dict(),
            "indices": {k: v.tolist() for k, v in self.indices.items()},
        }

    def save_manifest(self, path: str | os.PathLike) -> Path:
        """Write the chosen indices to a JSON manifest (atomically)."""
        write_json_atomic(path, self.manifest_dict())
        return Path(path)

    def _read_manifest(self, path: str) -> dict[str, np.ndarray]:
        try:
            with open(path) as fh:
                payload = json.load(fh)
        except (UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"`manifest` {path!r} is not a JSON manifest ({str(err).splitlines()[0]}): give the"
                             " manifest.json of a run (written by save_manifest).") from None
        missing = [k for k in ("forget_spec", "indices") if not isinstance(payload, dict) or k not in payload]
        if missing or not isinstance(payload.get("indices"), dict):
            raise ValueError(f"`manifest` {path!r} is not a manifest written by save_manifest: it has no"
                             f" {' or '.join(repr(k) for k in missing or ['indices'])} mapping.")
        expected = {"dataset": self.dataset_name, "num_train": len(self.data.train), "num_test": len(self.data.test)}  # type: ignore[arg-type]
        if self.dataset_name in ("mnist5k", "digits"):  # indices refer to the order of the seeded train/test split
            expected["split_seed"] = self.split_seed
        for key, value in expected.items():
            if payload.get(key, 0 if key == "split_seed" else None) != value:
                raise ValueError(f"`manifest` {path!r} has {key}={payload.get(key)!r}, but this data module has {value!r}.")
        try:
            self.forget = ForgetSpec.from_dict(payload["forget_spec"])
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"`manifest` {path!r} has an invalid forget_spec: {err}") from None
        try:
            indices = {k: np.asarray(v) for k, v in payload["indices"].items()}
        except ValueError:  # ragged nested lists
            raise ValueError(f"`manifest` {path!r}: every split must be a list of integer indices.") from None
        self._check_indices(indices, path)
        return {k: v.astype(np.int64) for k, v in indices.items()}

    def _check_indices(self, indices: dict[str, np.ndarray], path: str) -> None:
        """A manifest's splits are integer, in-range, duplicate-free indices, and D_f, D_r partition the training split.

        Every error names the first offending entries and how many there are.
        """
        where = f"`manifest` {path!r}"
        sizes = {"test_forget": len(self.data.test), "test_retain": len(self.data.test)}  # type: ignore[arg-type]
        for name in ("train", "forget", "retain"):
            if name not in indices:
                raise ValueError(f"{where} has no {name!r} split.")
        for name, values in indices.items():
            if name not in SPLITS:
                raise ValueError(f"{where} has an unknown split {name!r} (known: {list(SPLITS)}).")
            if values.size and (values.ndim != 1 or not np.issubdtype(values.dtype, np.integer)):
                raise ValueError(f"{where}: split {name!r} must be a list of integer indices.")
            bound = sizes.get(name, len(self.data.train))  # type: ignore[arg-type]
            bad = values[(values < 0) | (values >= bound)]
            if bad.size:
                raise ValueError(f"{where}: split {name!r} holds indices outside 0..{bound - 1}: {_first(bad)}.")
            unique, counts = np.unique(values, return_counts=True)
            if unique.size != values.size:
                raise ValueError(f"{where}: split {name!r} holds duplicated indices: {_first(unique[counts > 1])}.")
        train, forget, retain = indices["train"], indices["forget"], indices["retain"]
        both = np.intersect1d(forget, retain)
        if both.size:
            raise ValueError(
                f"{where}: 'forget' and 'retain' must split 'train' exactly, but {_first(both)} are in both;"
                " a retain split holding forget samples would train on the deleted data."
            )
        outside = np.setxor1d(np.union1d(forget, retain), train)
        if outside.size:
            raise ValueError(
                f"{where}: 'forget' and 'retain' must split 'train' exactly, but {_first(outside)} are in"
                " 'train' or in 'forget'/'retain' only."
            )
        held_out = np.concatenate([indices.get("new", np.empty(0, int)), indices.get("ref", np.empty(0, int))]).astype(np.int64)
        overlap = np.intersect1d(held_out, train)
        if overlap.size:
            raise ValueError(f"{where}: held-out splits ('new', 'ref') overlap the training split at {_first(overlap)}.")

    # --------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest_dict()} if self._data is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "manifest" in state_dict:
            self.forget = ForgetSpec.from_dict(state_dict["manifest"]["forget_spec"])
            self.indices = {k: np.asarray(v, dtype=np.int64) for k, v in state_dict["manifest"]["indices"].items()}
