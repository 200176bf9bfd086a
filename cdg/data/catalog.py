"""The data sets by name and their default network input sizes (torch-free: ``cdg.config`` reads it)."""
from __future__ import annotations

DATASETS: tuple[str, ...] = (
    "digits",
    "cifar10",
    "cifar100",
    "imagenet100",
    "fashion_mnist",
    "fashion_mnist_cluttered",
)

#: The network input size a data set is trained at when ``data.image_size`` is null
#: (Fashion-MNIST: its 28 px items padded to CIFAR's 32; the cluttered variant: its 48 px canvas).
DEFAULT_IMAGE_SIZE: dict[str, int] = {
    "digits": 16,
    "cifar10": 32,
    "cifar100": 32,
    "imagenet100": 224,
    "fashion_mnist": 32,
    "fashion_mnist_cluttered": 48,
}

#: Data sets that cannot run without ``data.data_dir`` (digits is bundled; Fashion-MNIST falls
#: back to Debian's ``dataset-fashion-mnist`` location, and says so when that is missing too).
NEEDS_DATA_DIR: tuple[str, ...] = ("cifar10", "cifar100", "imagenet100")
