"""CIFAR-10 / CIFAR-100 as sources: torchvision's readers of the python-pickle release, the whole
uint8 array in memory, stored at the native 32 px."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cdg.data.sources import TensorImageSource
from hwsim.trace.errors import UserError

# Normalisation constants on the [0, 1] scale: per-channel mean/std of the training images.
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
_CIFAR100_STD = (0.2673, 0.2564, 0.2762)

_CIFAR_LAYOUT = {
    # name: (torchvision folder, archive, files in the folder)
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        "data_batch_1..5, test_batch, batches.meta",
    ),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", "train, test, meta"),
}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def load_cifar_source(name: str, split: str, data_dir: str | Path | None, download: bool) -> TensorImageSource:
    from torchvision.datasets import CIFAR10, CIFAR100

    folder, archive, files = _CIFAR_LAYOUT[name]
    if data_dir is None:
        raise UserError(f"{name} needs data.data_dir: the directory that holds (or will receive) {folder}/")
    root = Path(data_dir).expanduser()
    missing = (
        f"{name} not found or corrupted under {root}: put the folder {folder}/ ({files}) extracted from "
        f"{archive} there, or set data.download=true when online"
    )
    reader = CIFAR10 if name == "cifar10" else CIFAR100
    train = split == "train"
    try:
        # Read what is there first: torchvision's download() re-verifies and prints even when present.
        dataset = reader(root=str(root), train=train, download=False)
    except (RuntimeError, OSError):
        if not download:
            raise UserError(missing) from None
        try:
            dataset = reader(root=str(root), train=train, download=True)
        except Exception as exc2:  # network errors come in many types (URLError, HTTPError, socket)
            raise UserError(
                f"{name}: download to {root} failed ({type(exc2).__name__}: {_one_line(exc2)}); {missing}"
            ) from None
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(dataset.targets, dtype=torch.long)
    mean, std = (_CIFAR10_MEAN, _CIFAR10_STD) if name == "cifar10" else (_CIFAR100_MEAN, _CIFAR100_STD)
    return TensorImageSource(
        name=name, split=split, images=images, labels=labels, classes=dataset.classes, mean=mean, std=std
    )
