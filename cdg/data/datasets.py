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
- ``imagenet100``: the 100-class ImageNet subset of CMC (Tian et al., 2019), read
  from an ImageNet folder layout (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``)
  and decoded in DataLoader workers to ``stored_size`` (shorter side resized, then
  centre-cropped); labels follow the sorted wnid order, as ``ImageFolder`` gives
  on a folder holding just those classes.

``image_size`` is the network's input size. Digits are stored at that size,
CIFAR at its native 32, ImageNet at ``round(image_size / 0.875)`` (256 for 224) so
that the on-device random crops and the centre crop of evaluation have a margin.
"""
from __future__ import annotations

import abc
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torchvision.datasets import ImageFolder

from hwsim.trace.errors import UserError

__all__ = [
    "DATASETS",
    "SPLITS",
    "IMAGENET_CROP_FRACTION",
    "ImageSource",
    "TensorImageSource",
    "ImageFolderSource",
    "default_image_size",
    "stored_size_for",
    "imagenet100_classes",
    "load_source",
]

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "imagenet100")
SPLITS: tuple[str, ...] = ("train", "test")

#: Fraction of the stored (resized) ImageNet image that the evaluation centre crop keeps (224 of 256).
IMAGENET_CROP_FRACTION = 0.875

_DEFAULT_IMAGE_SIZE = {"digits": 16, "cifar10": 32, "cifar100": 32, "imagenet100": 224}

# Normalisation constants on the [0, 1] scale: per-channel mean/std of the training images.
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
_CIFAR100_STD = (0.2673, 0.2564, 0.2762)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_CIFAR_LAYOUT = {
    # name: (torchvision folder, archive, files in the folder)
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        "data_batch_1..5, test_batch, batches.meta",
    ),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", "train, test, meta"),
}

_DIGITS_TEST_FRACTION = 0.25
_DIGITS_SPLIT_SEED = 0

_IMAGENET_FOLDERS = {"train": "train", "test": "val"}
_IMAGENET100_LIST = "imagenet100_classes.txt"


# --------------------------------------------------------------------------- helpers


def default_image_size(name: str) -> int:
    """The network input size a data set is trained at by default (digits 16, CIFAR 32, ImageNet 224)."""
    _check_name(name)
    return _DEFAULT_IMAGE_SIZE[name]


def stored_size_for(name: str, image_size: int) -> int:
    """H = W of the uint8 images a source of ``name`` yields when the network input is ``image_size``."""
    _check_name(name)
    if name == "digits":
        return image_size
    if name in ("cifar10", "cifar100"):
        return 32
    return int(round(image_size / IMAGENET_CROP_FRACTION))


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of ImageNet-100 (CMC, Tian et al. 2019), in the published order."""
    text = resources.files("cdg.data").joinpath(_IMAGENET100_LIST).read_text(encoding="ascii")
    return [line.strip() for line in text.splitlines() if line.strip()]


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


def _as_index_tensor(batch: Sequence[int] | torch.Tensor) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch.to(device="cpu", dtype=torch.long).reshape(-1)
    return torch.as_tensor(np.asarray(batch, dtype=np.int64).reshape(-1))


def _as_index_list(batch: Sequence[int] | torch.Tensor) -> list[int]:
    return [int(i) for i in _as_index_tensor(batch).tolist()]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- sources


class ImageSource(abc.ABC):
    """A labelled image set read by index batches; no shuffling, no randomness.

    Attributes:
        name, split: what was loaded.
        num_classes: number of classes (labels are ``0 .. num_classes - 1``).
        classes: class names (digits ``'0'..'9'``, CIFAR names, ImageNet wnids), index = label.
        mean, std: per-channel normalisation on the [0, 1] scale (training-set statistics).
        stored_size: H = W of the uint8 images ``iter_batches`` yields.
        labels: int64 tensor of all labels, in index order.
    """

    name: str
    split: str
    num_classes: int
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stored_size: int
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    @abc.abstractmethod
    def iter_batches(
        self,
        index_batches: Iterable[Sequence[int] | torch.Tensor],
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(uint8 images N x 3 x S x S, int64 labels N)`` for each index batch, in order."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, len={len(self)}, "
            f"num_classes={self.num_classes}, stored_size={self.stored_size})"
        )


class TensorImageSource(ImageSource):
    """A source held in memory as one uint8 tensor (digits, CIFAR); batches are slices of it."""

    def __init__(
        self,
        name: str,
        split: str,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")
        if images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be square, got {tuple(images.shape[2:])}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.name = name
        self.split = split
        self.images = images.contiguous()
        self.labels = labels.to(torch.long).contiguous()
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.mean = tuple(float(m) for m in mean)  # type: ignore[assignment]
        self.std = tuple(float(s) for s in std)  # type: ignore[assignment]
        self.stored_size = int(images.shape[-1])

    def iter_batches(
        self,
        index_batches: Iterable[Sequence[int] | torch.Tensor],
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Slices of the in-memory arrays; ``num_workers`` is accepted and unused (nothing to decode)."""
        if num_workers < 0:
            raise UserError(f"data.num_workers must be >= 0, got {num_workers}")
        pin = bool(pin_memory) and torch.cuda.is_available()
        for batch in index_batches:
            idx = _as_index_tensor(batch)
            images = self.images.index_select(0, idx)
            labels = self.labels.index_select(0, idx)
            if pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images, labels


class _RGBLoader:
    """Open an image file as RGB; JPEGs are decoded at a reduced DCT scale that stays >= ``min_side``."""

    def __init__(self, min_side: int) -> None:
        self.min_side = int(min_side)

    def __call__(self, path: str):
        from PIL import Image

        with open(path, "rb") as handle:
            image = Image.open(handle)
            # draft() only picks a power-of-two JPEG scale keeping both sides >= min_side; the exact
            # resize to the stored size happens afterwards, antialiased.
            image.draft("RGB", (self.min_side, self.min_side))
            return image.convert("RGB")


def _decode_transform(stored_size: int):
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(
                stored_size, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True
            ),
            transforms.CenterCrop(stored_size),
            transforms.PILToTensor(),
        ]
    )


class _SubsetImageFolder(ImageFolder):
    """``ImageFolder`` that sees only the given class folders (labels by sorted folder name).

    Defined at module level so that DataLoader workers started by spawn/forkserver can unpickle it.
    """

    def __init__(self, root: str, classes: Sequence[str], **kwargs) -> None:
        self._wanted = sorted(classes)
        super().__init__(root, **kwargs)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return list(self._wanted), {c: i for i, c in enumerate(self._wanted)}


class ImageFolderSource(ImageSource):
    """Images decoded from files in DataLoader workers (ImageNet-100)."""

    def __init__(
        self,
        name: str,
        split: str,
        root: Path,
        classes: Sequence[str],
        stored_size: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.name = name
        self.split = split
        self.root = Path(root)
        self.stored_size = int(stored_size)
        self.mean = tuple(float(m) for m in mean)  # type: ignore[assignment]
        self.std = tuple(float(s) for s in std)  # type: ignore[assignment]
        try:
            self.dataset = _SubsetImageFolder(
                str(self.root),
                classes,
                transform=_decode_transform(self.stored_size),
                loader=_RGBLoader(self.stored_size),
            )
        except FileNotFoundError:
            empty = [c for c in sorted(classes) if not _has_image_file(self.root / c)]
            where = self.root / empty[0] if empty else self.root
            raise UserError(
                f"{name}: no image files in {where} ({len(empty)} class folder(s) under {self.root} are empty)"
            ) from None
        self.classes = list(self.dataset.classes)
        self.num_classes = len(self.classes)
        self.labels = torch.as_tensor(self.dataset.targets, dtype=torch.long)

    def iter_batches(
        self,
        index_batches: Iterable[Sequence[int] | torch.Tensor],
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decode each index batch with a ``DataLoader`` over the given batches (``num_workers`` processes)."""
        from torch.utils.data import DataLoader

        if num_workers < 0:
            raise UserError(f"data.num_workers must be >= 0, got {num_workers}")
        loader = DataLoader(
            self.dataset,
            batch_sampler=_IndexBatches(index_batches),
            num_workers=int(num_workers),
            pin_memory=bool(pin_memory) and torch.cuda.is_available(),
        )
        for images, labels in loader:
            yield images, labels.to(torch.long)


class _IndexBatches:
    """A batch sampler over caller-given index batches (converted to lists of ints, lazily)."""

    def __init__(self, index_batches: Iterable[Sequence[int] | torch.Tensor]) -> None:
        self.index_batches = index_batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.index_batches:
            yield _as_index_list(batch)

    def __len__(self) -> int:
        return len(self.index_batches)  # type: ignore[arg-type]


def _has_image_file(folder: Path) -> bool:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not folder.is_dir():
        return False
    return any(p.is_file() and p.name.lower().endswith(IMG_EXTENSIONS) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- loaders


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

    ``data_dir`` is ignored for ``digits`` (bundled with scikit-learn). ``image_size`` is the
    network input size (default :func:`default_image_size`); see :func:`stored_size_for`.
    ``download`` applies to CIFAR only. ``classes`` restricts ``imagenet100`` to other wnids
    than the standard 100 (tests, smaller subsets); only those class folders must exist.
    """
    _check_name(name)
    _check_split(split)
    size = _check_image_size(default_image_size(name) if image_size is None else image_size)
    if classes is not None and name != "imagenet100":
        raise UserError(f"an explicit class list applies to imagenet100 only, not to {name}")
    if name == "digits":
        return _load_digits(split, size)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, split, data_dir, download)
    return _load_imagenet100(split, data_dir, stored_size_for(name, size), classes)


def _load_digits(split: str, image_size: int) -> TensorImageSource:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    raw = np.asarray(bunch.images, dtype=np.float64)  # N x 8 x 8, values 0..16
    targets = np.asarray(bunch.target, dtype=np.int64)
    as_uint8 = np.clip(np.rint(raw * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    train_idx, test_idx = train_test_split(
        np.arange(len(targets)),
        test_size=_DIGITS_TEST_FRACTION,
        random_state=_DIGITS_SPLIT_SEED,
        stratify=targets,
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)

    def images_at(idx: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(as_uint8[idx]).unsqueeze(1).to(torch.float32)
        if x.shape[-1] != image_size:
            x = torch.nn.functional.interpolate(
                x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
            )
        return x.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()

    train_images = images_at(train_idx)
    scaled = train_images[:, 0].to(torch.float64) / 255.0
    mean, std = float(scaled.mean()), float(scaled.std())
    idx = train_idx if split == "train" else test_idx
    images = train_images if split == "train" else images_at(test_idx)
    return TensorImageSource(
        name="digits",
        split=split,
        images=images,
        labels=torch.from_numpy(targets[idx]),
        classes=[str(d) for d in range(10)],
        mean=(mean, mean, mean),
        std=(std, std, std),
    )


def _load_cifar(name: str, split: str, data_dir: str | Path | None, download: bool) -> TensorImageSource:
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


def _load_imagenet100(
    split: str, data_dir: str | Path | None, stored_size: int, classes: Sequence[str] | None
) -> ImageFolderSource:
    name = "imagenet100"
    if data_dir is None:
        raise UserError(f"{name} needs data.data_dir: an ImageNet directory with train/<wnid>/ and val/<wnid>/")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(
            f"{name} data directory {root} does not exist (data.data_dir); it cannot be downloaded: "
            f"point it at an ImageNet layout with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG"
        )
    folder = root / _IMAGENET_FOLDERS[split]
    if not folder.is_dir():
        raise UserError(
            f"{name}: missing folder {folder} (data.data_dir must hold train/<wnid>/ and val/<wnid>/)"
        )
    wanted = imagenet100_classes() if classes is None else [str(c) for c in classes]
    if not wanted:
        raise UserError(f"{name}: the class list is empty")
    if len(set(wanted)) != len(wanted):
        raise UserError(f"{name}: the class list repeats a class")
    absent = [c for c in wanted if not (folder / c).is_dir()]
    if absent:
        raise UserError(
            f"{name}: class folder {folder / absent[0]} is missing "
            f"({len(absent)} of the {len(wanted)} classes are absent under {folder})"
        )
    return ImageFolderSource(
        name=name,
        split=split,
        root=folder,
        classes=wanted,
        stored_size=stored_size,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
    )
