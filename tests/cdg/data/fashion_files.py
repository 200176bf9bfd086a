"""Tiny Fashion-MNIST files in the real IDX format, written by the tests themselves.

IDX: a big-endian header (two zero bytes, the element type 0x08 = uint8, the number of
dimensions), one big-endian uint32 per dimension, then the data; optionally gzipped, as
Debian's ``dataset-fashion-mnist`` and the original release ship them.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def fake_items(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 items (a bright class-dependent bar on noise) and their labels 0..9."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 10
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 + 2 * label : 6 + 2 * label, 3:25] = 200 + rng.integers(0, 55)
    return images, labels


def write_fashion(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, torchvision_layout: bool = False):
    """Write the four IDX files into ``folder`` (or ``folder/FashionMNIST/raw``); return what was written."""
    raw = folder / "FashionMNIST" / "raw" if torchvision_layout else folder
    written = {}
    for split, prefix, n, seed in (("train", "train", n_train, 1), ("test", "t10k", n_test, 2)):
        images, labels = fake_items(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), gz)
        written[split] = (images, labels)
    return written
