"""ImageNet-100 as a source: the 100-class ImageNet subset of CMC (Tian et al., 2019), read from
an ImageNet folder layout (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) and decoded in DataLoader
workers to the stored size (shorter side resized, then centre-cropped); labels follow the sorted
wnid order, as ``ImageFolder`` gives on a folder holding just those classes."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torchvision.datasets import ImageFolder

from cdg.data.sources import ImageSource, as_index_list
from hwsim.trace.errors import UserError

#: Fraction of the stored (resized) ImageNet image that the evaluation centre crop keeps (224 of 256).
IMAGENET_CROP_FRACTION = 0.875

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGENET_FOLDERS = {"train": "train", "test": "val"}
_IMAGENET100_LIST = "imagenet100_classes.txt"


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of ImageNet-100 (CMC, Tian et al. 2019), in the published order."""
    text = resources.files("cdg.data").joinpath(_IMAGENET100_LIST).read_text(encoding="ascii")
    return [line.strip() for line in text.splitlines() if line.strip()]


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
            yield as_index_list(batch)

    def __len__(self) -> int:
        return len(self.index_batches)  # type: ignore[arg-type]


def _has_image_file(folder: Path) -> bool:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not folder.is_dir():
        return False
    return any(p.is_file() and p.name.lower().endswith(IMG_EXTENSIONS) for p in folder.rglob("*"))


def load_imagenet100_source(
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
