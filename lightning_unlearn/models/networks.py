"""Small reference classifiers: LeNet-5, All-CNN and a CIFAR ResNet-18.

Each ends in an ``nn.Linear`` head whose rows are the class prototypes, the anatomy every
method in this package relies on (notation in the docs: backbone E, head C).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ModelName = Literal["lenet5", "allcnn", "resnet18"]


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling.

    Args:
        num_classes: number of output classes.
        in_channels: input channels.
        input_size: input height/width (28 for MNIST, 32 for CIFAR, 8 for sklearn digits).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        pad2 = 2 if input_size < 16 else 0
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, input_size, input_size)).shape[1]
        self.embed = nn.Sequential(nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.fc = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(self.features(x)))


def _conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class AllCNN(nn.Module):
    """All-CNN (Springenberg et al. 2015) with BatchNorm, as used in the unlearning literature.

    Strided convolutions instead of pooling, global average pooling, then a linear head.

    Args:
        num_classes: number of output classes.
        in_channels: input channels.
        width: channels of the first block (96 in the paper; smaller is faster on CPU).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w1, w2 = width, 2 * width
        self.features = nn.Sequential(
            _conv_bn(in_channels, w1),
            _conv_bn(w1, w1),
            _conv_bn(w1, w1, stride=2),
            _conv_bn(w1, w2),
            _conv_bn(w2, w2),
            _conv_bn(w2, w2, stride=2),
            _conv_bn(w2, w2),
            _conv_bn(w2, w2, kernel=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(w2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def resnet18_cifar(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3×3 stride-1 first conv and no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(name: ModelName, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """Build a reference classifier by name for inputs of ``input_shape`` (C, H, W)."""
    channels, height, _ = input_shape
    if name == "lenet5":
        return LeNet5(num_classes, channels, height)
    if name == "allcnn":
        return AllCNN(num_classes, channels)
    if name == "resnet18":
        return resnet18_cifar(num_classes, channels)
    raise ValueError(f"`model` must be one of ['allcnn', 'lenet5', 'resnet18'], got {name!r}.")
