"""The host CPU as a ``hwsim.models`` model: predicted wall-clock time of torch's dense conv and
of the sparse executor (``python -m cdg.execute``) on the trace's gate masks.

A batch of ``cfg.batch`` images is one forward. Each torch op is priced as its fixed call cost
``op_us`` plus the slower of its arithmetic (GEMM-shape efficiency, ``config.Throughput``) and its
operand bytes at cache or DRAM bandwidth; indexed copies per row and per byte
(``config.RowCopy``). A gated conv's candidate paths are the executor's (docs/hwsim-cpu.md);
the executor times them on the real input and keeps the fastest, so the model predicts each
and keeps the cheapest (``path: auto``), or the one a config forces where it is a candidate:

- base path + gather (base conv dense, gate decisions from its output): ``spatial_gather``
  (S = C_out), ``tile_conv`` (S = C_out, b > 1: DynConv's input tiles), ``union_gather`` and
  ``channel_block_gather`` (S < C_out), ``dense_masked``; whole-pixel scatter-adds use the
  channels_last rates where ``channels_last`` is set;
- no base path and masks constant per channel (FBS): ``channel_union`` (one conv over the
  batch's kept channels), ``channel_slice`` (one conv per image), ``dense_masked``; input
  channels that are structurally zero (trace activation masks) are skipped.

Unlike the systolic and GPU models, all gates on is slower than dense: that is the executor's
real cost. Per-image figures are the batch's / batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.figures import Figures, LossColumns
from hwsim.models.cpu.config import CPUConfig, RowCopy, Throughput
from hwsim.models.cpu.kernels import active_channels, block_rows, channel_constant
from hwsim.workload import LayerWorkload

PATHS = ("dense", "spatial_gather", "channel_block_gather", "channel_slice", "dense_masked", "union_gather",
         "channel_union", "tile_conv")
PARTS = ("base", "gather", "gemm", "scatter", "overhead")
INDEX_BYTES = 8        # int64 indices
INDEX_PASSES = 4       # patch-index arithmetic: about four int64 tensors of P x k written and read
# skip unit: one (channel block, output pixel) GEMM row of the conditional part
LOSS_COLUMNS = LossColumns(skip_units="rows_dense", units_run="rows")


@dataclass
class Cost:
    """One batch of one layer: microseconds by part, arithmetic-bound time, MACs, torch calls."""

    parts: dict = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    compute_us: float = 0.0
    macs: float = 0.0
    ops: int = 0
    rows: float = 0.0

    def add(self, part: str, us: float, compute: float = 0.0, macs: float = 0.0, ops: int = 1) -> None:
        self.parts[part] += us
        self.compute_us += compute
        self.macs += macs
        self.ops += ops

    @property
    def us(self) -> float:
        return sum(self.parts.values())


@dataclass(frozen=True)
class Shape:
    B: int
    c_in: int
    h_in: int
    w_in: int
    pad: int
    c_out: int
    E: int
    k: int            # kernel window kh * kw
    c_base: int
    groups: int

    @property
    def c_cond(self) -> int:
        return self.c_in - self.c_base

    @property
    def hw_in(self) -> int:
        return self.h_in * self.w_in


def _eff(x: float, half: float) -> float:
    return x / (x + half)


def _flop_us(t: Throughput, m: int, n: int, k: int, scale: float) -> float:
    return 2.0 * m * n * k / (t.peak_gflops * 1e3 * scale * _eff(m, t.m_half) * _eff(n, t.n_half) * _eff(k, t.k_half))


def _mem_us(cfg: CPUConfig, nbytes: float) -> float:
    mem = cfg.memory
    if nbytes <= mem.cache_kb * 1024:
        bw = mem.cache_gb_s
    elif nbytes <= mem.llc_kb * 1024:
        bw = mem.llc_gb_s
    else:
        bw = mem.dram_gb_s
    return nbytes / (bw * 1e3)                 # GB/s = 1e3 bytes per microsecond


def _gemm(cost: Cost, cfg: CPUConfig, t: Throughput, part: str, m: int, n: int, k: int, nbytes: float) -> None:
    if m * n * k == 0:
        return
    compute = _flop_us(t, m, n, k, cfg.thread_scale())
    cost.add(part, cfg.op_us + max(compute, _mem_us(cfg, nbytes)), compute, float(m * n * k))


def _conv(cost: Cost, cfg: CPUConfig, part: str, B: int, c_in: int, hw_in: int, c_out: int, E: int, k: int) -> None:
    wb = cfg.word_bytes
    nbytes = B * c_in * hw_in * wb.ifmap + c_out * c_in * k * wb.filter + B * c_out * E * wb.ofmap
    _gemm(cost, cfg, cfg.conv, part, B * E, c_out, c_in * k, nbytes)


def _rows(cost: Cost, cfg: CPUConfig, rc: RowCopy, part: str, rows: float, row_bytes: float, tensor_bytes: float) -> None:
    """Indexed copy of rows of a ``tensor_bytes`` tensor: per-row and per-byte cost (at the far
    rate when the tensor does not fit the cache), no faster than streaming its bytes in and out."""
    if rows > 0:
        nbytes = rows * row_bytes
        bw = rc.gb_s if tensor_bytes <= cfg.memory.cache_kb * 1024 else rc.far_gb_s
        cost.add(part, cfg.op_us + max(rows * rc.row_ns * 1e-3 + nbytes / (bw * 1e3), _mem_us(cfg, 2 * nbytes)))


def _out_bytes(cfg: CPUConfig, s: Shape) -> float:
    return s.B * s.c_out * s.E * cfg.word_bytes.ofmap


def _elementwise(cost: Cost, cfg: CPUConfig, part: str, nbytes: float) -> None:
    cost.add(part, cfg.op_us + _mem_us(cfg, nbytes))


def _overhead(cost: Cost, cfg: CPUConfig, n: int) -> None:
    cost.add("overhead", n * cfg.op_us, ops=n)


def _shape(work: LayerWorkload, cfg: CPUConfig) -> Shape:
    spec = work.spec
    c_in, h, w = spec.in_shape
    c_out, ho, wo = spec.out_shape
    base = spec.gate.base_channels if spec.gate is not None else c_in
    return Shape(cfg.batch, c_in, h, w, spec.padding[0], c_out, ho * wo, spec.kernel[0] * spec.kernel[1], base,
                 spec.groups)


def _dense_cost(work: LayerWorkload, cfg: CPUConfig) -> Cost:
    s, cost = _shape(work, cfg), Cost()
    wb = cfg.word_bytes
    if work.spec.op == "linear":
        _gemm(cost, cfg, cfg.gemm, "base", s.B, s.c_out, s.c_in,
              (s.B * s.c_in + s.c_in * s.c_out + s.B * s.c_out) * wb.ifmap)
    else:
        _conv(cost, cfg, "base", s.B, s.c_in // s.groups, s.hw_in * s.groups, s.c_out, s.E, s.k)
    return cost


# ---- base path + gather (cdg, cgnet; dgnet-like layers without a base path) ----------------
def _base(cfg: CPUConfig, s: Shape) -> Cost:
    """Base conv (a zero-filled output without base path) and the gate decisions from it."""
    cost, out_bytes = Cost(), _out_bytes(cfg, s)
    if s.c_base:
        _conv(cost, cfg, "base", s.B, s.c_base, s.hw_in, s.c_out, s.E, s.k)
    else:
        _elementwise(cost, cfg, "base", out_bytes)
    _elementwise(cost, cfg, "overhead", out_bytes)          # block pooling of the decision
    _overhead(cost, cfg, cfg.ops.decide)
    return cost


def _patches(cost: Cost, cfg: CPUConfig, s: Shape, rows: int) -> None:
    """The zero-padded NHWC copy of the conditional input, the patch index and one row gather of
    ``rows`` pixels' k taps (C_cond contiguous values each)."""
    wb = cfg.word_bytes.ifmap
    padded = s.B * s.c_cond * (s.h_in + 2 * s.pad) * (s.w_in + 2 * s.pad) * wb
    _elementwise(cost, cfg, "gather", padded)                               # zero fill
    _elementwise(cost, cfg, "gather", 2 * s.B * s.c_cond * s.hw_in * wb)    # permuted copy in
    _elementwise(cost, cfg, "gather", INDEX_PASSES * rows * s.k * INDEX_BYTES)
    _rows(cost, cfg, cfg.gather, "gather", rows * s.k, s.c_cond * wb, padded)


def _gather_gemm(cost: Cost, cfg: CPUConfig, s: Shape, rows: int, cols: int) -> None:
    wb, K = cfg.word_bytes, s.c_cond * s.k
    _gemm(cost, cfg, cfg.gemm, "gemm", rows, cols, K, (rows * K + K * cols) * wb.ifmap + rows * cols * wb.ofmap)


def _spatial(cfg: CPUConfig, s: Shape, union: int, blocks: np.ndarray) -> Cost:
    cost = _base(cfg, s)
    _overhead(cost, cfg, cfg.ops.spatial)
    if union:
        _overhead(cost, cfg, cfg.ops.gather)
        _patches(cost, cfg, s, union)
        _gather_gemm(cost, cfg, s, union, s.c_out)
        _pixel_scatter(cost, cfg, s, union)
    cost.rows = float(union * len(blocks))
    return cost


def _pixel_scatter(cost: Cost, cfg: CPUConfig, s: Shape, rows: int) -> None:
    """Scatter-add of whole output pixels (all C_out): ``index_add_`` into a channels_last output,
    ``index_put_`` into an NCHW one."""
    rc = cfg.scatter_channels_last if cfg.channels_last else cfg.scatter
    _rows(cost, cfg, rc, "scatter", rows, s.c_out * cfg.word_bytes.ofmap, _out_bytes(cfg, s))


def _tile_conv(cfg: CPUConfig, s: Shape, union: int, blocks: np.ndarray, b: int, kh: int) -> Cost:
    """DynConv's form (S = C_out, b > 1): each active b x b block gathers its (b + k - 1)^2 input
    tile (C_cond contiguous values per pixel), one dense conv over the batch of tiles, scatter-add
    of the blocks' pixels (edge blocks cropped)."""
    cost, wb = _base(cfg, s), cfg.word_bytes.ifmap
    _overhead(cost, cfg, cfg.ops.spatial)
    if union:
        tiles = -(-union // (b * b))
        edge = b + kh - 1
        padded = s.B * s.c_cond * (s.h_in + 2 * s.pad + b) * (s.w_in + 2 * s.pad + b) * wb
        _overhead(cost, cfg, cfg.ops.tile_conv)
        _elementwise(cost, cfg, "gather", padded)
        _elementwise(cost, cfg, "gather", 2 * s.B * s.c_cond * s.hw_in * wb)
        _rows(cost, cfg, cfg.gather, "gather", tiles * edge * edge, s.c_cond * wb, padded)
        _conv(cost, cfg, "gemm", tiles, s.c_cond, edge * edge, s.c_out, b * b, s.k)
        _elementwise(cost, cfg, "scatter", 2 * tiles * b * b * s.c_out * cfg.word_bytes.ofmap)   # to pixel rows
        _pixel_scatter(cost, cfg, s, union)
    cost.rows = float(union * len(blocks))
    return cost


def _union(cfg: CPUConfig, s: Shape, union: int, blocks: np.ndarray) -> Cost:
    cost = _spatial(cfg, s, union, blocks)       # its scatter-add too: whole pixels, masked per block
    _overhead(cost, cfg, cfg.ops.union)
    if union:
        _elementwise(cost, cfg, "scatter", 3 * union * s.c_out * cfg.word_bytes.ofmap)   # per-block mask
    return cost


def _block_loop(cfg: CPUConfig, s: Shape, union: int, blocks: np.ndarray, S: int) -> Cost:
    cost, wb = _base(cfg, s), cfg.word_bytes
    _overhead(cost, cfg, cfg.ops.spatial + cfg.ops.union)
    if union:
        _overhead(cost, cfg, cfg.ops.gather)
        _patches(cost, cfg, s, union)
    for a, r in enumerate(blocks):
        if r:
            cols = min(S, s.c_out - a * S)
            _overhead(cost, cfg, cfg.ops.per_channel_block)
            _rows(cost, cfg, cfg.gather, "gather", int(r), s.c_cond * s.k * wb.ifmap,   # the block's patch rows
                  union * s.c_cond * s.k * wb.ifmap)
            _gather_gemm(cost, cfg, s, int(r), cols)
            _rows(cost, cfg, cfg.scatter, "scatter", int(r), cols * wb.ofmap, _out_bytes(cfg, s))
    cost.rows = float(blocks.sum())
    return cost


def _dense_masked(cfg: CPUConfig, s: Shape, rows: float) -> Cost:
    cost = _base(cfg, s)
    _conv(cost, cfg, "gemm", s.B, s.c_cond, s.hw_in, s.c_out, s.E, s.k)
    _elementwise(cost, cfg, "scatter", 3 * s.B * s.c_out * s.E * cfg.word_bytes.ofmap)
    _overhead(cost, cfg, cfg.ops.dense_masked)
    cost.rows = rows
    return cost


# ---- channel gates (fbs) ---------------------------------------------------------------------
def _channel_conv(cost: Cost, cfg: CPUConfig, s: Shape, B: int, active: int, live: int) -> None:
    """Weight rows of ``active`` channels over ``live`` input channels, the input channels, one conv
    and the per-channel scale of its output, scattered into the output."""
    if not active:
        return
    wb = cfg.word_bytes
    weights = s.c_out * s.c_in * s.k * wb.filter
    _rows(cost, cfg, cfg.gather, "gather", active, s.c_in * s.k * wb.filter, weights)
    _rows(cost, cfg, cfg.gather, "gather", active * live, s.k * wb.filter, weights)
    _rows(cost, cfg, cfg.gather, "gather", B * live, s.hw_in * wb.ifmap, B * s.c_in * s.hw_in * wb.ifmap)
    _conv(cost, cfg, "gemm", B, live, s.hw_in, active, s.E, s.k)
    _elementwise(cost, cfg, "scatter", 2 * B * active * s.E * wb.ofmap)
    _rows(cost, cfg, cfg.scatter, "scatter", B * active, s.E * wb.ofmap, B * s.c_out * s.E * wb.ofmap)


def _channel_prelude(cfg: CPUConfig, s: Shape, calls: int) -> Cost:
    """Zero-filled output, the predictor's pass over the input, the zero-channel test, calls."""
    cost, wb = Cost(), cfg.word_bytes
    _elementwise(cost, cfg, "base", s.B * s.c_out * s.E * wb.ofmap)
    _elementwise(cost, cfg, "overhead", 2 * s.B * s.c_in * s.hw_in * wb.ifmap)
    _overhead(cost, cfg, cfg.ops.decide + calls)
    return cost


def _channel_union(cfg: CPUConfig, s: Shape, active: int, live: int) -> Cost:
    cost = _channel_prelude(cfg, s, cfg.ops.channel_union)
    _channel_conv(cost, cfg, s, s.B, active, live)
    cost.rows = float(s.B * active * s.E)
    return cost


def _channel_slice(cfg: CPUConfig, s: Shape, own: np.ndarray, live: int) -> Cost:
    cost = _channel_prelude(cfg, s, 0)
    for a in own:
        _overhead(cost, cfg, cfg.ops.per_image)
        _channel_conv(cost, cfg, s, 1, int(a), live)
    cost.rows = float(own.sum() * s.E)
    return cost


def _live_inputs(s: Shape, act_masks: np.ndarray | None) -> int:
    """Input channels not structurally zero in every activation image (all of them without masks)."""
    if act_masks is None:
        return s.c_in
    return int(act_masks.reshape(act_masks.shape[0], s.c_in, -1).any(axis=(0, 2)).sum())


# ---- the contract ----------------------------------------------------------------------------
def _figures(cost: Cost, cfg: CPUConfig, s: Shape, path: str, rows_dense: float, dense_macs: float) -> Figures:
    B, wb, e = s.B, cfg.word_bytes, cfg.energy
    mhz = cfg.clock_mhz
    traffic = {"dram_ifmap_read": float(s.c_in * s.hw_in * wb.ifmap),
               "dram_filter_read": float(s.c_out * s.c_in // s.groups * s.k * wb.filter) / B,
               "dram_ofmap_write": float(s.c_out * s.E * wb.ofmap)}
    macs = cost.macs / B if path != "dense" else float(dense_macs)
    energy = {"mac": macs * e.mac_pj, "dram": sum(traffic.values()) * e.dram_pj_per_byte,
              "static": e.static_w * cost.us / B * 1e6}       # W x us = 1e-6 J = 1e6 pJ
    energy["total"] = sum(energy.values())
    counters = {"path": float(PATHS.index(path)), "ops": float(cost.ops), "rows": cost.rows / B,
                "rows_dense": rows_dense / B, "batch_us": cost.us}
    counters.update({f"{p}_us": v for p, v in cost.parts.items()})
    return Figures(cycles=cost.compute_us * mhz / B, total_cycles=cost.us * mhz / B, macs=macs,
                   energy_pj=energy, traffic_bytes=traffic, counters=counters,
                   skip_units=counters["rows_dense"], units_run=counters["rows"])


def dense(work: LayerWorkload, cfg: CPUConfig) -> Figures:
    """torch's dense conv2d (or linear) on the whole batch."""
    return _figures(_dense_cost(work, cfg), cfg, _shape(work, cfg), "dense", 0.0, work.dense_macs)


def _batches(n: int, B: int) -> np.ndarray:
    """(ceil(n/B), B) image indices; the last batch is filled with images from the start."""
    nb = -(-n // B)
    return (np.arange(nb * B, dtype=np.int64) % n).reshape(nb, B)


def _pick(cfg: CPUConfig, per_batch: list[dict]) -> str:
    """The one path of the layer, as the executor tunes it once per layer: the forced one where it
    is a candidate, else the cheapest over all batches."""
    if cfg.path in per_batch[0]:
        return cfg.path
    return min(per_batch[0], key=lambda k: sum(options[k].us for options in per_batch))


def _options(work: LayerWorkload, cfg: CPUConfig, s: Shape, masks: np.ndarray, idx: np.ndarray,
             act_masks: np.ndarray | None) -> tuple[list[dict], float]:
    """Per batch, the cost of every candidate path; and the dense GEMM rows (the skip units)."""
    S = min(work.spec.gate.S, s.c_out)
    out = []
    if s.c_base == 0 and channel_constant(masks):
        live = _live_inputs(s, act_masks)
        union, own = active_channels(masks, idx)
        rows_dense = float(s.B * s.c_out * s.E)
        for j in range(idx.shape[0]):
            options = {"channel_union": _channel_union(cfg, s, int(union[j]), live),
                       "dense_masked": _dense_masked(cfg, s, rows_dense)}
            if s.B > 1:
                options["channel_slice"] = _channel_slice(cfg, s, own[j], live)
            out.append(options)
        return out, rows_dense
    blocks, union = block_rows(masks, idx, S)
    rows_dense = float(s.B * s.E * blocks.shape[1])
    for j in range(idx.shape[0]):
        b, u = blocks[j], int(union[j])
        options = {"dense_masked": _dense_masked(cfg, s, rows_dense)}
        if S >= s.c_out:
            options["spatial_gather"] = _spatial(cfg, s, u, b)
            if work.spec.gate.b > 1:
                options["tile_conv"] = _tile_conv(cfg, s, u, b, work.spec.gate.b, work.spec.kernel[0])
        else:
            options["union_gather"] = _union(cfg, s, u, b)
            if len(b) <= cfg.max_block_loop:
                options["channel_block_gather"] = _block_loop(cfg, s, u, b, S)
        out.append(options)
    return out, rows_dense


def sparse(work: LayerWorkload, cfg: CPUConfig, gate_masks: np.ndarray | None,
           act_masks: np.ndarray | None = None, act_density: float | None = None) -> list[Figures]:
    """Per image, the executor's time on the real gate masks (``act_masks``: structurally zero
    input channels, for channel gates; ``act_density`` is not used)."""
    if gate_masks is None or not work.gated:
        return [dense(work, cfg)]
    s = _shape(work, cfg)
    n = gate_masks.shape[0]
    masks = np.ascontiguousarray(gate_masks.reshape(n, s.c_out, -1))
    idx = _batches(n, s.B)
    per_batch, rows_dense = _options(work, cfg, s, masks, idx, act_masks)
    name = _pick(cfg, per_batch)
    figs = [_figures(options[name], cfg, s, name, rows_dense, work.dense_macs) for options in per_batch]
    return [figs[i // s.B] for i in range(n)]


def granularity(work: LayerWorkload, cfg: CPUConfig) -> str:
    g = work.spec.gate
    if g is None:
        return "none (ungated)"
    if g.base_channels == 0:
        return "output channel where the masks are per channel (weight slicing), else as the gate grid"
    if g.S >= work.spec.out_shape[0]:
        return "output pixel (gathered GEMM rows)"
    return f"channel block of {g.S} x output pixel (gathered GEMM rows, union or per block)"
