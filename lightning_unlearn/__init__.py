"""lightning-unlearn: machine unlearning of classifiers for PyTorch Lightning."""

from lightning_unlearn.api import create_method, make_trainer, train_classifier, unlearn
from lightning_unlearn.evaluation import UnlearningReport, evaluate
from lightning_unlearn.data import (
    ClassForget,
    ForgetSpec,
    IndexForget,
    RandomForget,
    SubclassForget,
    UnlearningDataModule,
)
from lightning_unlearn.methods import (
    FineTune,
    GradientAscent,
    NonFiniteLossError,
    Retrain,
    UnlearningMethod,
    available_methods,
    get_method,
    register_method,
)
from lightning_unlearn.models import AllCNN, Anatomy, Classifier, HeadNotFoundError, LeNet5, resnet18_cifar
from lightning_unlearn.outputs import SplitOutputs, predict, predict_split, split_accuracies

__version__ = "0.1.0"

__all__ = [
    "AllCNN",
    "Anatomy",
    "ClassForget",
    "Classifier",
    "FineTune",
    "ForgetSpec",
    "GradientAscent",
    "HeadNotFoundError",
    "IndexForget",
    "LeNet5",
    "NonFiniteLossError",
    "RandomForget",
    "Retrain",
    "SplitOutputs",
    "SubclassForget",
    "UnlearningDataModule",
    "UnlearningMethod",
    "UnlearningReport",
    "available_methods",
    "create_method",
    "evaluate",
    "get_method",
    "make_trainer",
    "predict",
    "predict_split",
    "register_method",
    "resnet18_cifar",
    "split_accuracies",
    "train_classifier",
    "unlearn",
]
