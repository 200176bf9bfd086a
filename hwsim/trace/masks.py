"""Gate and activation masks: decision grid <-> full resolution, and the bit packing of ``masks/*.npz``.

A gate decision covers S output channels x b x b output pixels; the trace stores one bit per
decision (``GateGrid``), the simulator wants one per output. numpy only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hwsim.trace.errors import HwsimError
from hwsim.trace.schema import LayerSpec


# --------------------------------------------------------------------------------------------
def expand_gate_blocks(blocks: np.ndarray, spec: LayerSpec) -> np.ndarray:
    """Decision grid (n, ceil(C/S), ceil(H/b), ceil(W/b)) -> full-resolution (n, C, H, W) bool."""
    assert spec.gate is not None
    c, h, w = spec.out_shape
    s_blk, b_blk = spec.gate.S, spec.gate.b
    full = blocks.repeat(s_blk, axis=1).repeat(b_blk, axis=2).repeat(b_blk, axis=3)
    return np.ascontiguousarray(full[:, :c, :h, :w])


def reduce_gate_masks(masks: np.ndarray, spec: LayerSpec, source: str) -> np.ndarray:
    """Full-resolution masks -> decision grid; fails if masks are not constant per block."""
    assert spec.gate is not None
    s_blk, b_blk = spec.gate.S, spec.gate.b
    blocks = np.ascontiguousarray(masks[:, ::s_blk, ::b_blk, ::b_blk])
    if not np.array_equal(expand_gate_blocks(blocks, spec), masks):
        raise HwsimError(source, f"layer {spec.name!r}.gate_masks",
                         f"masks are not constant over gate blocks (S={s_blk}, b={b_blk})")
    return blocks


def pack_bits(arr: np.ndarray) -> np.ndarray:
    return np.packbits(arr.astype(bool, copy=False).reshape(-1))


def unpack_bits(bits: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.unpackbits(bits, count=count).astype(bool).reshape(tuple(int(s) for s in shape))
