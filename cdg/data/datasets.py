"""Image data sets by name, as deterministic sources of uint8 batches.

``load_source(name, split, data_dir)`` returns an :class:`ImageSource`. A source
never shuffles and never augments: the training loop owns the sampler (per-epoch
permutation, DDP sharding, resume skipping) and hands ``iter_batches`` the index
batches to read, in order; all augmentation runs batched on the training device
(``cdg.data.augment``). Every batch is ``(uint8 N x 3 x S x S, int64 N)`` with
``S = source.stored_size``.

Data sets:

- ``digits``: scikit-learn's bundled 8x8 digits, upscaled to ``image_size``,
  grayscale replicated to RGB, in memory; a fixed stratified 75/25 train/test
  split (``random_state=0``).
- ``cifar10`` / ``cifar100``: torchvision's readers of the python-pickle release,
  the whole uint8 array in memory.
- ``fashion_mnist``: torchvision's ``FashionMNIST`` reader of the IDX files (Debian's
  ``dataset-fashion-mnist`` by default), the standard 60k/10k split, 28 px items padded to a
  32 px frame (resized for other sizes), gray replicated to RGB, in memory
  (``cdg.data.fashion_mnist``).
- ``fashion_mnist_cluttered``: each item at a seeded random place on a 48 px canvas among
  fragments of other items of its split, generated once per process, in memory
  (``cdg.data.fashion_cluttered``).
- ``imagenet100``: the 100-class ImageNet subset of CMC (Tian et al., 2019), read
  from an ImageNet folder layout (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``)
  and decoded in DataLoader workers to ``stored_size`` (shorter side resized, then
  centre-cropped); labels follow the sorted wnid order, as ``ImageFolder`` gives
  on a folder holding just those classes.

``image_size`` is the network's input size. Digits and Fashion-MNIST are stored at that size,
CIFAR at its native 32, ImageNet at ``round(image_size / 0.875)`` (256 for 224) so
that the on-device random crops and the centre crop of evaluation have a margin.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cdg.data.catalog import DATASETS, DEFAULT_IMAGE_SIZE
from cdg.data.cifar import load_cifar_source
from cdg.data.digits import load_digits_source
from cdg.data.fashion_cluttered import load_cluttered_source
from cdg.data.fashion_mnist import load_fashion_mnist_source
from cdg.data.imagenet import IMAGENET_CROP_FRACTION, load_imagenet100_source
from cdg.data.sources import ImageSource
from hwsim.trace.errors import UserError

__all__ = ["SPLITS", "default_image_size", "stored_size_for", "load_source"]

SPLITS: tuple[str, ...] = ("train", "test")


def default_image_size(name: str) -> int:
    """The network input size a data set is trained at by default (digits 16, CIFAR and Fashion-MNIST 32,
    cluttered Fashion-MNIST 48, ImageNet 224)."""
    _check_name(name)
    return DEFAULT_IMAGE_SIZE[name]


def stored_size_for(name: str, image_size: int) -> int:
    """H = W of the uint8 images a source of ``name`` yields when the network input is ``image_size``."""
    _check_name(name)
    if name in ("digits", "fashion_mnist", "fashion_mnist_cluttered"):
        return image_size
    if name in ("cifar10", "cifar100"):
        return 32
    return int(round(image_size / IMAGENET_CROP_FRACTION))


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r} (data.dataset): valid names are {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: valid splits are {', '.join(SPLITS)}")


def _check_image_size(image_size: object) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or int(image_size) < 1:
        raise UserError(f"data.image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


def load_source(
    name: str,
    split: str,
    data_dir: str | Path | None,
    image_size: int | None = None,
    download: bool = False,
    *,
    classes: Sequence[str] | None = None,
) -> ImageSource:
    """Load data set ``name`` (one of :data:`DATASETS`), split ``train`` or ``test``.

    ``data_dir`` is ignored for ``digits`` (bundled with scikit-learn); for Fashion-MNIST, None
    means Debian's ``dataset-fashion-mnist`` location. ``image_size`` is the network input size
    (default :func:`default_image_size`); see :func:`stored_size_for`. ``download`` applies to
    CIFAR and Fashion-MNIST. ``classes`` restricts ``imagenet100`` to other wnids
    than the standard 100 (tests, smaller subsets); only those class folders must exist.
    """
    _check_name(name)
    _check_split(split)
    size = _check_image_size(default_image_size(name) if image_size is None else image_size)
    if classes is not None and name != "imagenet100":
        raise UserError(f"an explicit class list applies to imagenet100 only, not to {name}")
    if name == "digits":
        return load_digits_source(split, size)
    if name in ("cifar10", "cifar100"):
        return load_cifar_source(name, split, data_dir, download)
    if name == "fashion_mnist":
        return load_fashion_mnist_source(split, data_dir, download, size)
    if name == "fashion_mnist_cluttered":
        return load_cluttered_source(split, data_dir, download, size)
    return load_imagenet100_source(split, data_dir, stored_size_for(name, size), classes)
