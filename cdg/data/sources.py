"""The source interface: a labelled image set read by caller-given index batches, never shuffled and
never augmented (the training loop owns the sampler; augmentation runs on the device), and the
in-memory source of digits, CIFAR and Fashion-MNIST."""
from __future__ import annotations

import abc
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from hwsim.trace.errors import UserError


def as_index_tensor(batch: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """An index batch (tensor, list, array) as a flat int64 CPU tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device="cpu", dtype=torch.long).reshape(-1)
    return torch.as_tensor(np.asarray(batch, dtype=np.int64).reshape(-1))


def as_index_list(batch: Sequence[int] | torch.Tensor) -> list[int]:
    """An index batch as a list of python ints (what a DataLoader batch sampler yields)."""
    return [int(i) for i in as_index_tensor(batch).tolist()]


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
    """A source held in memory as one uint8 tensor (digits, CIFAR, Fashion-MNIST); batches are slices of it."""

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
        # A gray source passes its one channel expanded to three (stride 0): kept as that view, so
        # the pixels are stored once; index_select still yields contiguous RGB batches.
        broadcast_gray = images.stride(1) == 0 and images[:, :1].is_contiguous()
        self.images = images if broadcast_gray else images.contiguous()
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
            idx = as_index_tensor(batch)
            images = self.images.index_select(0, idx)
            labels = self.labels.index_select(0, idx)
            if pin:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images, labels
