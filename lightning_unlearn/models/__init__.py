"""Small reference classifiers, the training module, and backbone/head anatomy."""

from lightning_unlearn.models.anatomy import Anatomy, HeadNotFoundError, frozen_batchnorm, set_requires_grad
from lightning_unlearn.models.classifier import Classifier, build_optimizer, split_batch
from lightning_unlearn.models.networks import AllCNN, LeNet5, build_model, resnet18_cifar

__all__ = [
    "AllCNN",
    "Anatomy",
    "Classifier",
    "HeadNotFoundError",
    "LeNet5",
    "build_model",
    "build_optimizer",
    "frozen_batchnorm",
    "resnet18_cifar",
    "set_requires_grad",
    "split_batch",
]
