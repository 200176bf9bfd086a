"""Fashion-MNIST (Xiao et al., 2017) as a source, read by torchvision's ``FashionMNIST`` reader.

Why this data set: on scikit-learn's digits raw pixels already score about as well as any
learned feature, so the methods cannot be told apart there; Fashion-MNIST leaves room between
random features, raw pixels and self-supervised ones. The standard split: 60,000 training and
10,000 test images, 28x28 grayscale, 10 classes.

Where the files come from, in this order:

1. ``data.data_dir`` null: Debian's ``dataset-fashion-mnist`` package
   (``apt-get install dataset-fashion-mnist``), which puts the four gzipped IDX files in
   :data:`DEBIAN_DIR`.
2. ``data.data_dir`` given: the four IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte``,
   each plain or ``.gz``) in ``<data_dir>/FashionMNIST/raw/`` (torchvision's layout) or directly
   in ``<data_dir>`` (the Debian layout).
3. ``data.download=true`` (with ``data.data_dir``): torchvision downloads them into
   ``<data_dir>/FashionMNIST/raw/``.

Otherwise one line names both ways. torchvision's reader opens only uncompressed files in
``<root>/FashionMNIST/raw/`` (and checks that all four exist), so files in any other form are
staged into a temporary folder of that shape (symlinks to plain files, gunzipped copies of
``.gz`` ones) and read from there; nothing is written next to the data.

Network input: the 28x28 item is zero-padded by 2 px to 32x32 (the LeNet convention; the
background is already 0, so no pixel changes) and, for any other ``data.image_size``, resized
from that 32 px frame (bilinear, antialiased), then the gray channel is replicated to RGB as for
digits. The normalisation mean/std are those of the training images as stored (exact, from
their 256-bin histogram), the same for the three channels: 0.2190 and 0.3318 at 32 px. Over the
raw 28 px training images they are 0.2860 and 0.3530, the values published for Fashion-MNIST
(``gray_stats(load_arrays(None, False)["train"][0])`` on Debian's files), a check that the
files are read right.
"""
from __future__ import annotations

import functools
import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from cdg.data.sources import TensorImageSource
from hwsim.trace.errors import UserError

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Side of the frame the 28 px item is padded into: the network input size by default.
FRAME = 32
#: The four IDX files, without the optional ``.gz``.
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _files_in(folder: Path) -> dict[str, Path] | None:
    """The four files (plain preferred over ``.gz``) if all are in ``folder``, else None."""
    found = {}
    for name in FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def locate(data_dir: str | Path | None, download: bool) -> dict[str, Path]:
    """The four IDX files to read (see the module docstring for the order), or a one-line UserError."""
    how = (
        "install Debian's package (apt-get install dataset-fashion-mnist, files in "
        f"{DEBIAN_DIR}/) or set data.data_dir=DIR holding {FILES[0]}[.gz] and the other three IDX files "
        "(in DIR or DIR/FashionMNIST/raw/), adding data.download=true to let torchvision download them there"
    )
    if data_dir is None:
        found = _files_in(DEBIAN_DIR)
        if found is not None:
            return found
        if download:
            raise UserError(f"fashion_mnist: data.download=true needs data.data_dir (where to download to); or {how}")
        raise UserError(f"fashion_mnist not found in {DEBIAN_DIR}: {how}")
    root = Path(data_dir).expanduser()
    for folder in (root / "FashionMNIST" / "raw", root):
        found = _files_in(folder)
        if found is not None:
            return found
    if not download:
        raise UserError(f"fashion_mnist not found under {root}: {how}")
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(root=str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types (URLError, HTTPError, socket)
        why = f"{type(exc).__name__}: {_one_line(exc)}"
        raise UserError(f"fashion_mnist: download to {root} failed ({why}); {how}") from None
    found = _files_in(root / "FashionMNIST" / "raw")
    if found is None:
        raise UserError(f"fashion_mnist: download to {root} left no IDX files in {root / 'FashionMNIST' / 'raw'}")
    return found


def _stage(files: dict[str, Path], raw: Path) -> None:
    """Lay the files out as ``raw/<name>``, uncompressed, for torchvision's reader."""
    raw.mkdir(parents=True)
    for name, path in files.items():
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            os.symlink(path.resolve(), raw / name)


def _read(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from torchvision.datasets import FashionMNIST

    first = files[FILES[0]].parent
    try:
        in_place = first.name == "raw" and first.parent.name == "FashionMNIST"
        if in_place and all(p.suffix != ".gz" for p in files.values()):
            root = first.parent.parent  # already torchvision's layout: read in place
            train, test = FashionMNIST(str(root), train=True), FashionMNIST(str(root), train=False)
        else:
            with tempfile.TemporaryDirectory(prefix="cdg-fashion-") as tmp:
                _stage(files, Path(tmp) / "FashionMNIST" / "raw")
                train, test = FashionMNIST(tmp, train=True), FashionMNIST(tmp, train=False)
    except (OSError, EOFError, AssertionError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(
            f"fashion_mnist: cannot read the IDX files in {first} "
            f"({type(exc).__name__}: {_one_line(exc) or 'bad header'})"
        ) from None
    arrays = (train.data.numpy(), train.targets.numpy(), test.data.numpy(), test.targets.numpy())
    for images, labels, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "t10k")):
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise UserError(
                f"fashion_mnist: {split} files in {first} hold {tuple(images.shape)} images and "
                f"{len(labels)} labels, "
                "expected N x 28 x 28 and N labels"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
            raise UserError(
                f"fashion_mnist: {split} labels in {first} must be 0..9, got {labels.min()}..{labels.max()}"
            )
    return arrays


def files_key(data_dir: str | Path | None, download: bool) -> tuple:
    """A hashable name of the files to read (paths, sizes, mtimes): the key of the in-process caches."""
    files = locate(data_dir, download)
    return tuple((name, str(path), path.stat().st_size, path.stat().st_mtime_ns) for name, path in files.items())


@functools.lru_cache(maxsize=2)
def read_files(key: tuple) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (uint8 N x 28 x 28, int64 N), "test": ...}`` of :func:`files_key`'s files, read once."""
    arrays = _read({name: Path(path) for name, path, _, _ in key})
    return {"train": (arrays[0], arrays[1]), "test": (arrays[2], arrays[3])}


def load_arrays(data_dir: str | Path | None, download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits as uint8 N x 28 x 28 images and int64 labels (read once per process and set of files)."""
    return read_files(files_key(data_dir, download))


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N x H x H -> N x size x size (bilinear, antialiased, in chunks to bound memory)."""
    if images.shape[-1] == size:
        return images
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for start in range(0, len(images), 4096):
        x = torch.from_numpy(images[start : start + 4096]).unsqueeze(1).to(torch.float32)
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + 4096] = x.round_().clamp_(0, 255).to(torch.uint8)[:, 0].numpy()
    return out


def gray_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and (population) std on the [0, 1] scale, exact, from the 256-bin histogram."""
    counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    std = float(np.sqrt((counts * (values - mean) ** 2).sum() / total))
    return mean, std


def gray_source(
    name: str, split: str, images: np.ndarray, labels: np.ndarray, train_images: np.ndarray
) -> TensorImageSource:
    """An in-memory RGB source over gray uint8 images: the channel is a broadcast view, stored once."""
    mean, std = gray_stats(train_images)
    if std <= 0:
        raise UserError(f"{name}: the training images are all one value; nothing to learn")
    gray = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    return TensorImageSource(
        name=name,
        split=split,
        images=gray.expand(-1, 3, -1, -1),
        labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        classes=CLASSES,
        mean=(mean, mean, mean),
        std=(std, std, std),
    )


def framed(images: np.ndarray, size: int) -> np.ndarray:
    """28 px items zero-padded into the 32 px frame, then resized to ``size`` when it differs."""
    pad = (FRAME - images.shape[-1]) // 2
    return resize(np.pad(images, ((0, 0), (pad, pad), (pad, pad))), size)


def load_fashion_mnist_source(
    split: str, data_dir: str | Path | None, download: bool, image_size: int
) -> TensorImageSource:
    arrays = load_arrays(data_dir, download)
    images, labels = arrays[split]
    train = framed(arrays["train"][0], image_size)
    stored = train if split == "train" else framed(images, image_size)
    return gray_source("fashion_mnist", split, stored, labels, train)
