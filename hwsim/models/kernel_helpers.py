"""Numba helpers shared by the models' kernels (compiled once, cached on disk with ``cache=True``)."""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def heap_replace_root(heap, v):
    """Min-heap of slot free times: the earliest-free slot (the root) takes work finishing at
    ``v``; sift down. Greedy list scheduling in the sparse-PE dynamic queue and the GPU block
    scheduler."""
    size = heap.shape[0]
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and heap[c + 1] < heap[c]:
            c += 1
        if heap[c] < v:
            heap[pos] = heap[c]
            pos = c
        else:
            break
    heap[pos] = v
