"""Numba kernels of the CPU model: what the sparse executor's index building finds in a batch's
gate masks. Compiled once and cached (``cache=True``).

A batch is a row of ``images`` (image indices into the masks; a short trace's images repeat to
fill it, as the executor replicates them). Masks are full resolution, (n, C_out, P) bool with
P = H_out * W_out; a channel block of S output channels shares its decisions, so its first
channel stands for it.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def block_rows(masks, images, s):
    """-> ((nb, ceil(C/s)) int64, (nb,) int64): per batch and channel block, the output pixels
    (over the batch's images) whose conditional part runs (the GEMM rows of that block), and per
    batch the pixels where any block runs (the union the gather paths collect)."""
    nb, n_b = images.shape
    c = masks.shape[1]
    p = masks.shape[2]
    blocks = (c + s - 1) // s
    out = np.zeros((nb, blocks), dtype=np.int64)
    union = np.zeros(nb, dtype=np.int64)
    for j in range(nb):
        for i in range(n_b):
            img = images[j, i]
            for q in range(p):
                seen = False
                for a in range(blocks):
                    if masks[img, a * s, q]:
                        out[j, a] += 1
                        seen = True
                if seen:
                    union[j] += 1
    return out, union


@njit(cache=True)
def channel_constant(masks):
    """True when every (image, channel) of the masks is all on or all off over its pixels: a
    channel gate (FBS-like), which the executor runs by slicing weights, not by gathering."""
    n, c, p = masks.shape
    for i in range(n):
        for a in range(c):
            first = masks[i, a, 0]
            for q in range(1, p):
                if masks[i, a, q] != first:
                    return False
    return True


@njit(cache=True)
def active_channels(masks, images):
    """-> ((nb,) int64, (nb, B) int64): per batch, the output channels on in at least one of its
    images (what ``channel_union`` computes), and per image of it its own (``channel_slice``)."""
    nb, n_b = images.shape
    c = masks.shape[1]
    union = np.zeros(nb, dtype=np.int64)
    own = np.zeros((nb, n_b), dtype=np.int64)
    on = np.zeros(c, dtype=np.bool_)
    for j in range(nb):
        on[:] = False
        for i in range(n_b):
            img = images[j, i]
            for a in range(c):
                if masks[img, a, 0]:
                    on[a] = True
                    own[j, i] += 1
        union[j] = on.sum()
    return union, own
