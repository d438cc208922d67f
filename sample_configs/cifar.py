"""CIFAR-10 and ResNet-18 through torchvision, for users with torchvision and a GPU (not run by the tests)."""

from __future__ import annotations

from typing import Any


def cifar10(root: str = "~/.cache/cifar10", train: bool = True, download: bool = True) -> Any:
    """The CIFAR-10 train (or test) set with the usual augmentation and normalisation."""
    import torchvision
    import torchvision.transforms as T

    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
    return torchvision.datasets.CIFAR10(root, train=train, download=download, transform=transform)


def resnet18(num_classes: int = 10) -> Any:
    """torchvision's ResNet-18 with a 3x3 stem for 32x32 images (the usual CIFAR adaptation)."""
    import torch.nn as nn
    import torchvision

    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
