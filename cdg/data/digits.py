"""scikit-learn's bundled 8x8 digits as a source: upscaled to the network size, grayscale
replicated to RGB, in memory; a fixed stratified 75/25 train/test split (``random_state=0``)."""
from __future__ import annotations

import numpy as np
import torch

from cdg.data.sources import TensorImageSource

_DIGITS_TEST_FRACTION = 0.25
_DIGITS_SPLIT_SEED = 0


def load_digits_source(split: str, image_size: int) -> TensorImageSource:
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
