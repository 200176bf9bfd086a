"""The data sets by name and their default network input sizes (torch-free: ``cdg.config`` reads it)."""
from __future__ import annotations

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "imagenet100")

#: The network input size a data set is trained at when ``data.image_size`` is null.
DEFAULT_IMAGE_SIZE: dict[str, int] = {"digits": 16, "cifar10": 32, "cifar100": 32, "imagenet100": 224}
