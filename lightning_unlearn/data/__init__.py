"""Forget specifications, seeded splits, the data module and the bundled datasets."""

from lightning_unlearn.data.datamodule import SPLITS, TrainingData, UnlearningDataModule, write_json_atomic
from lightning_unlearn.data.datasets import DatasetPair, IndexedDataset, digits, load_dataset, mnist5k, torchvision_dataset
from lightning_unlearn.data.forget import ClassForget, ForgetSpec, IndexForget, RandomForget, SubclassForget
from lightning_unlearn.data.seeding import index_randint, index_random_other_label, index_uniform

__all__ = [
    "SPLITS",
    "ClassForget",
    "DatasetPair",
    "ForgetSpec",
    "IndexForget",
    "IndexedDataset",
    "RandomForget",
    "SubclassForget",
    "TrainingData",
    "UnlearningDataModule",
    "digits",
    "index_randint",
    "index_random_other_label",
    "index_uniform",
    "load_dataset",
    "mnist5k",
    "torchvision_dataset",
    "write_json_atomic",
]
