"""Cluttered Fashion-MNIST: each item at a random place on a 48x48 canvas among fragments of other
items, generated deterministically from the Fashion-MNIST files (labels unchanged).

Why: on plain Fashion-MNIST the item fills the frame, so a spatial gate has little background to
skip and two random crops of an image see the item in much the same place. Here the item covers
about a third of the canvas, the rest is dark or clutter that carries no label, and the item's
position varies, as in the cluttered MNIST of Mnih et al. (2014, "Recurrent models of visual
attention"), scaled to this canvas.

Recipe, for image ``i`` of split ``s`` (``train`` = 0, ``test`` = 1) of a split holding ``n``
items, with seed :data:`CLUTTER_SEED`:

1. ``bits = PCG64(SeedSequence([seed, s, i])).random_raw(2 + 5 * FRAGMENTS)``: 64-bit words
   from numpy's PCG64 bit generator, whose stream numpy keeps stable across versions and
   machines (unlike the ``Generator`` methods'), mapped to ranges by ``%`` (bias < 1e-14).
2. The canvas starts black. :data:`FRAGMENTS` fragments are pasted in order: for fragment ``k``
   the source item ``j = bits % (n - 1)``, shifted past ``i`` (so ``j != i``, always another
   item of the same split), a ``FRAGMENT x FRAGMENT`` crop of it at a uniform position inside
   its 28x28 image, pasted at a uniform position inside the canvas; pixels combine by maximum.
3. The item itself (28x28) is pasted by maximum at a uniform top-left in ``[0, 20]^2``, so it
   lies wholly inside the canvas.

The test split's clutter comes from test items: a split never reads the other one. An image is
thus a pure function of (split, index, seed) and the split's files. The training split is
generated once per process and kept in memory as uint8 (60,000 x 48 x 48 = 138 MB, gray
stored once). Generating it took 2.1-4.2 s over three runs (0.8-1.5 s drawing the layouts,
whose per-image seeding is a Python loop; 1.1-1.3 s pasting, vectorised per placement) on the
project's shared 2-core machine, measured with::

    python -c "import time; from cdg.data import fashion_mnist as f, fashion_cluttered as c; \
    x = f.load_arrays(None, False)['train'][0]; t = time.time(); c.generate_cluttered(x, 'train'); \
    print(time.time() - t)"

Network input: the 48 px canvas (the default ``data.image_size``), resized for any other size
(bilinear, antialiased); gray replicated to RGB; mean/std of the training canvases.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cdg.data import fashion_mnist
from cdg.data.sources import TensorImageSource
from hwsim.trace.errors import UserError

#: Side of the canvas, in px.
CANVAS = 48
#: Side of the 28 px items pasted on it.
ITEM = 28
#: Clutter fragments per image and their side, in px.
FRAGMENTS = 4
FRAGMENT = 10
#: The seed of the data set: fixed, so that every run sees the same images.
CLUTTER_SEED = 0
SPLIT_IDS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Layout:
    """Where everything goes, per image (index order of ``indices``).

    item_pos: N x 2 (top, left) of the item on the canvas.
    frag_src: N x K indices of the items the fragments are cut from (never the image's own).
    frag_crop: N x K x 2 (top, left) of each fragment inside its source item.
    frag_pos: N x K x 2 (top, left) of each fragment on the canvas.
    """

    indices: np.ndarray
    item_pos: np.ndarray
    frag_src: np.ndarray
    frag_crop: np.ndarray
    frag_pos: np.ndarray


def layout(n: int, split: str, seed: int = CLUTTER_SEED, indices: np.ndarray | None = None) -> Layout:
    """The placements of images ``indices`` (default: all ``n``) of a split of ``n`` items."""
    if split not in SPLIT_IDS:
        raise UserError(f"unknown split {split!r}: valid splits are {', '.join(SPLIT_IDS)}")
    if n < 2:
        raise UserError(
            f"fashion_mnist_cluttered needs at least 2 items per split (clutter comes from others), got {n}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"clutter seed must be a non-negative integer, got {seed!r}")
    idx = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise UserError(f"image indices must be in [0, {n}), got {idx.min()}..{idx.max()}")
    words = 2 + 5 * FRAGMENTS
    bits = np.empty((idx.size, words), dtype=np.uint64)
    split_id = SPLIT_IDS[split]
    for row, i in enumerate(idx.tolist()):
        bits[row] = np.random.PCG64(np.random.SeedSequence([int(seed), split_id, i])).random_raw(words)
    item_pos = (bits[:, :2] % np.uint64(CANVAS - ITEM + 1)).astype(np.int64)
    frag = bits[:, 2:].reshape(idx.size, FRAGMENTS, 5)
    src = (frag[:, :, 0] % np.uint64(n - 1)).astype(np.int64)
    src += src >= idx[:, None]
    crop = (frag[:, :, 1:3] % np.uint64(ITEM - FRAGMENT + 1)).astype(np.int64)
    pos = (frag[:, :, 3:5] % np.uint64(CANVAS - FRAGMENT + 1)).astype(np.int64)
    return Layout(indices=idx, item_pos=item_pos, frag_src=src, frag_crop=crop, frag_pos=pos)


def _paste(canvas: np.ndarray, patches: np.ndarray, top: np.ndarray, left: np.ndarray) -> None:
    """canvas[b, top_b + y, left_b + x] = max(that, patches[b, y, x]) for every b.

    Vectorised per placement: the images that put their patch at the same (top, left) are
    pasted as one slice, so the Python loop runs over at most (48 - side + 1)^2 placements,
    not over images.
    """
    side = patches.shape[-1]
    span = canvas.shape[-1] - side + 1
    code = top * span + left
    order = np.argsort(code, kind="stable")
    codes = code[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if codes.size else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], codes.size]
    for start, end in zip(starts.tolist(), ends.tolist()):
        sel = order[start:end]
        y, x = divmod(int(codes[start]), span)
        region = canvas[sel, y : y + side, x : x + side]
        canvas[sel, y : y + side, x : x + side] = np.maximum(region, patches[sel])


def render(images: np.ndarray, plan: Layout) -> np.ndarray:
    """uint8 N x 28 x 28 items (the whole split) + a layout -> uint8 M x 48 x 48 canvases."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (ITEM, ITEM):
        raise UserError(f"cluttered canvases need uint8 N x {ITEM} x {ITEM} items, got {images.dtype} {images.shape}")
    canvas = np.zeros((plan.indices.size, CANVAS, CANVAS), dtype=np.uint8)
    ar = np.arange(FRAGMENT)
    for k in range(FRAGMENTS):
        src = plan.frag_src[:, k][:, None, None]
        cy, cx = plan.frag_crop[:, k, 0], plan.frag_crop[:, k, 1]
        patches = images[src, cy[:, None, None] + ar[None, :, None], cx[:, None, None] + ar[None, None, :]]
        _paste(canvas, patches, plan.frag_pos[:, k, 0], plan.frag_pos[:, k, 1])
    _paste(canvas, images[plan.indices], plan.item_pos[:, 0], plan.item_pos[:, 1])
    return canvas


def generate_cluttered(
    images: np.ndarray, split: str, seed: int = CLUTTER_SEED, indices: np.ndarray | None = None
) -> np.ndarray:
    """The cluttered canvases of images ``indices`` (default: all) of a split whose items are ``images``."""
    return render(images, layout(len(images), split, seed, indices))


@functools.lru_cache(maxsize=2)
def _canvases(key: tuple, split: str, image_size: int) -> np.ndarray:
    images = fashion_mnist.read_files(key)[split][0]
    return fashion_mnist.resize(generate_cluttered(images, split), image_size)


def load_cluttered_source(
    split: str, data_dir: str | Path | None, download: bool, image_size: int
) -> TensorImageSource:
    key = fashion_mnist.files_key(data_dir, download)
    train = _canvases(key, "train", image_size)
    images = train if split == "train" else _canvases(key, "test", image_size)
    labels = fashion_mnist.read_files(key)[split][1]
    return fashion_mnist.gray_source("fashion_mnist_cluttered", split, images, labels, train)
