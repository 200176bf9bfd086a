"""SCALE-Sim topology CSVs (conv and GEMM) as hwsim layer tables, laid out as SCALE-Sim lays them.

Conv rows (``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
Num Filter, Strides,``) give the *padded* input; SCALE-Sim's output size is
ceil((H - kh + s) / s), so the layer here reads the extent (H_out - 1) * s + kh that output
needs. A row whose name contains ``DP`` is depthwise, and SCALE-Sim splits it into one
single-channel layer per channel (``<name>Channel_<i>``); so does this reader, so the figures
agree layer for layer. GEMM rows (``Layer, M, N, K,``) are SCALE-Sim's mapping of an M x K by
K x N product: an M x K input with one channel and N filters of 1 x K. The format is detected
from the header (a GEMM header has the columns M, N, K). An N:M sparsity column is refused.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from hwsim.trace import LayerSpec, make_layer
from hwsim.trace.errors import HwsimError

CONV_FIELDS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels", "Num Filter", "Strides")


def _cells(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="") as handle:
            rows = [[c.strip() for c in row] for row in csv.reader(handle)]
    except UnicodeDecodeError:
        raise HwsimError(str(path), "(file)", "not a text CSV") from None
    rows = [r[:-1] if r and r[-1] == "" else r for r in rows if any(c for c in r)]  # SCALE-Sim's trailing comma
    if len(rows) < 2:
        raise HwsimError(str(path), "(rows)", "needs a header and at least one layer")
    return rows


def _ints(row: list[str], count: int, names: tuple[str, ...], source: str, line: int) -> list[int]:
    if len(row) < count + 1:
        raise HwsimError(source, f"line {line}", f"expected {count + 1} columns (name, {', '.join(names)}), got {len(row)}")
    if len(row) > count + 1:
        raise HwsimError(source, f"line {line}", "extra columns (N:M sparsity ratios are not modelled)")
    out = []
    for name, cell in zip(names, row[1:]):
        try:
            value = int(cell)
        except ValueError:
            raise HwsimError(source, f"line {line}.{name}", f"not an integer: {cell!r}") from None
        if value < 1:
            raise HwsimError(source, f"line {line}.{name}", f"must be >= 1, got {value}")
        out.append(value)
    return out


def _conv(name: str, h: int, w: int, kh: int, kw: int, c: int, m: int, s: int, source: str, line: int) -> LayerSpec:
    if kh > h or kw > w:
        raise HwsimError(source, f"line {line}", f"filter {kh}x{kw} larger than the input {h}x{w}")
    out_h, out_w = math.ceil((h - kh + s) / s), math.ceil((w - kw + s) / s)
    used = ((out_h - 1) * s + kh, (out_w - 1) * s + kw)
    return make_layer(name, "conv", (c, *used), m, (kh, kw), s, 0)


def load_topology(path: str | os.PathLike) -> list[LayerSpec]:
    """The layers of a SCALE-Sim conv or GEMM topology CSV, one image, dense."""
    path = Path(path)
    source = str(path)
    rows = _cells(path)
    header = [h.strip().lower() for h in rows[0]]
    layers: list[LayerSpec] = []
    if header[1:4] == ["m", "n", "k"]:
        for line, row in enumerate(rows[1:], start=2):
            m, n, k = _ints(row, 3, ("M", "N", "K"), source, line)
            layers.append(make_layer(row[0], "conv", (1, m, k), n, (1, k), 1, 0))
        return _unique(layers, source)
    if [h.lower() for h in CONV_FIELDS] != header[1:8]:
        raise HwsimError(source, "header", "neither a SCALE-Sim conv topology (Layer name, " + ", ".join(CONV_FIELDS)
                         + ") nor a GEMM one (Layer, M, N, K)")
    for line, row in enumerate(rows[1:], start=2):
        h, w, kh, kw, c, m, s = _ints(row, 7, CONV_FIELDS, source, line)
        if "DP" in row[0]:
            layers += [_conv(f"{row[0]}Channel_{i}", h, w, kh, kw, 1, m, s, source, line) for i in range(c)]
        else:
            layers.append(_conv(row[0], h, w, kh, kw, c, m, s, source, line))
    return _unique(layers, source)


def _unique(layers: list[LayerSpec], source: str) -> list[LayerSpec]:
    seen: set[str] = set()
    for spec in layers:
        if spec.name in seen:
            raise HwsimError(source, f"layer {spec.name!r}", "appears twice (layer names must be unique)")
        seen.add(spec.name)
    return layers
