"""The host CPU as a ``hwsim.models`` model: predicted wall-clock time of torch's dense conv and
of the sparse executor (``cdg.sparse_exec``) on the trace's gate masks.

A batch of ``cfg.batch`` images is one forward. Each torch op is priced as its fixed call cost
``op_us`` plus the slower of its arithmetic (GEMM-shape efficiency, ``config.Throughput``) and its
operand bytes at cache or DRAM bandwidth; indexed copies are priced per row and per byte
(``config.RowCopy``). The executor's paths per gated conv (docs/hwsim-cpu.md):

- ``spatial_gather`` (S = C_out): dense base conv; gather the im2col patches of the active output
  pixels, one GEMM with the conditional weights, scatter-add into the base output;
- ``channel_block_gather`` (S < C_out): the same per channel block, over that block's pixels;
- ``dense_masked``: base conv + full conditional conv + mask multiply-add (unstructured S = b = 1
  may take it; ``unstructured: auto`` picks the cheaper path per batch, as the executor does);
- ``channel_slice``: a layer without base path whose masks are constant per channel (FBS): one
  conv over the active output channels (the batch's union) and the input channels that are not
  structurally zero (from the trace's activation masks).

Unlike the systolic and GPU models, all gates on is slower than dense (the gather, GEMM and
scatter-add replace one conv call); that is the executor's real cost. Per-image figures are the
batch's / batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.figures import Figures, LossColumns
from hwsim.models.cpu.config import CPUConfig, Throughput, RowCopy
from hwsim.models.cpu.kernels import active_channels, block_rows, channel_constant
from hwsim.workload import LayerWorkload

PATHS = ("dense", "spatial_gather", "channel_block_gather", "channel_slice", "dense_masked")
PARTS = ("base", "gather", "gemm", "scatter", "overhead")
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


def _eff(x: float, half: float) -> float:
    return x / (x + half)


def _flop_us(t: Throughput, m: int, n: int, k: int, scale: float) -> float:
    return 2.0 * m * n * k / (t.peak_gflops * 1e3 * scale * _eff(m, t.m_half) * _eff(n, t.n_half) * _eff(k, t.k_half))


def _mem_us(cfg: CPUConfig, nbytes: float) -> float:
    mem = cfg.memory
    bw = mem.cache_gb_s if nbytes <= mem.cache_kb * 1024 else mem.dram_gb_s
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


def _rows(cost: Cost, cfg: CPUConfig, rc: RowCopy, part: str, rows: float, row_bytes: float) -> None:
    """Indexed copy: per-row and per-byte cost, no faster than streaming its bytes in and out."""
    if rows > 0:
        nbytes = rows * row_bytes
        cost.add(part, cfg.op_us + max(rows * rc.row_ns * 1e-3 + nbytes / (rc.gb_s * 1e3), _mem_us(cfg, 2 * nbytes)))


def _elementwise(cost: Cost, cfg: CPUConfig, part: str, nbytes: float) -> None:
    cost.add(part, cfg.op_us + _mem_us(cfg, nbytes))


def _overhead(cost: Cost, cfg: CPUConfig, n: int) -> None:
    cost.add("overhead", n * cfg.op_us, ops=n)


@dataclass(frozen=True)
class Shape:
    B: int
    c_in: int
    hw_in: int
    c_out: int
    E: int
    k: int            # kernel window kh * kw
    c_base: int
    groups: int

    @property
    def c_cond(self) -> int:
        return self.c_in - self.c_base


def _shape(work: LayerWorkload, cfg: CPUConfig) -> Shape:
    spec = work.spec
    c_in, h, w = spec.in_shape
    c_out, ho, wo = spec.out_shape
    base = spec.gate.base_channels if spec.gate is not None else c_in
    return Shape(cfg.batch, c_in, h * w, c_out, ho * wo, spec.kernel[0] * spec.kernel[1], base, spec.groups)


def _dense_cost(work: LayerWorkload, cfg: CPUConfig) -> Cost:
    s, cost = _shape(work, cfg), Cost()
    wb = cfg.word_bytes
    if work.spec.op == "linear":
        _gemm(cost, cfg, cfg.gemm, "base", s.B, s.c_out, s.c_in,
              (s.B * s.c_in + s.c_in * s.c_out + s.B * s.c_out) * wb.ifmap)
    else:
        _conv(cost, cfg, "base", s.B, s.c_in // s.groups, s.hw_in * s.groups, s.c_out, s.E, s.k)
    return cost


def _base(cost: Cost, cfg: CPUConfig, s: Shape) -> None:
    if s.c_base:
        _conv(cost, cfg, "base", s.B, s.c_base, s.hw_in, s.c_out, s.E, s.k)
    else:   # no base path: the output starts as zeros
        _elementwise(cost, cfg, "base", s.B * s.c_out * s.E * cfg.word_bytes.ofmap)


def _gathered(cost: Cost, cfg: CPUConfig, s: Shape, rows: int, cols: int) -> None:
    """Gather ``rows`` output pixels' patches (one row of C_cond per window tap), one GEMM onto
    ``cols`` output channels, scatter-add the rows into the output."""
    if rows == 0:
        return
    wb = cfg.word_bytes
    K = s.c_cond * s.k
    _rows(cost, cfg, cfg.gather, "gather", rows * s.k, s.c_cond * wb.ifmap)
    _gemm(cost, cfg, cfg.gemm, "gemm", rows, cols, K, (rows * K + K * cols) * wb.ifmap + rows * cols * wb.ofmap)
    _rows(cost, cfg, cfg.scatter, "scatter", rows, cols * wb.ofmap)
    cost.rows += rows


def _block_path(cfg: CPUConfig, s: Shape, rows: np.ndarray, S: int) -> Cost:
    cost = Cost()
    _base(cost, cfg, s)
    _overhead(cost, cfg, cfg.ops.spatial)
    if S >= s.c_out:
        _gathered(cost, cfg, s, int(rows[0]), s.c_out)
        return cost
    for a, r in enumerate(rows):
        if r:
            _overhead(cost, cfg, cfg.ops.per_channel_block)
            _gathered(cost, cfg, s, int(r), min(S, s.c_out - a * S))
    return cost


def _dense_masked(cfg: CPUConfig, s: Shape, rows: np.ndarray) -> Cost:
    cost = Cost()
    _base(cost, cfg, s)
    _conv(cost, cfg, "gemm", s.B, s.c_cond, s.hw_in, s.c_out, s.E, s.k)
    _elementwise(cost, cfg, "scatter", 3 * s.B * s.c_out * s.E * cfg.word_bytes.ofmap)
    _overhead(cost, cfg, cfg.ops.dense_masked)
    cost.rows = float(rows.sum())
    return cost


def _channel_slice(cfg: CPUConfig, s: Shape, active: int, c_live: int) -> Cost:
    cost, wb = Cost(), cfg.word_bytes
    _overhead(cost, cfg, cfg.ops.channel_slice)
    _elementwise(cost, cfg, "base", s.B * s.c_out * s.E * wb.ofmap)
    if active:
        _rows(cost, cfg, cfg.gather, "gather", active, c_live * s.k * wb.filter)      # weight rows
        if c_live < s.c_in:
            _rows(cost, cfg, cfg.gather, "gather", s.B * c_live, s.hw_in * wb.ifmap)   # live input channels
        _conv(cost, cfg, "gemm", s.B, c_live, s.hw_in, active, s.E, s.k)
        _rows(cost, cfg, cfg.scatter, "scatter", s.B * active, s.E * wb.ofmap)
    cost.rows = float(s.B * active * s.E)
    return cost


def _live_inputs(s: Shape, act_masks: np.ndarray | None) -> int:
    """Input channels not structurally zero in every activation image (all of them without masks)."""
    if act_masks is None:
        return s.c_in
    return int(act_masks.reshape(act_masks.shape[0], s.c_in, -1).any(axis=(0, 2)).sum())


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
    units = None if path == "dense" else (rows_dense / B, cost.rows / B)
    return Figures(cycles=cost.compute_us * mhz / B, total_cycles=cost.us * mhz / B, macs=macs,
                   energy_pj=energy, traffic_bytes=traffic, counters=counters,
                   skip_units=None if units is None else units[0], units_run=None if units is None else units[1])


def dense(work: LayerWorkload, cfg: CPUConfig) -> Figures:
    """torch's dense conv2d (or linear) on the whole batch."""
    return _figures(_dense_cost(work, cfg), cfg, _shape(work, cfg), "dense", 0.0, work.dense_macs)


def _batches(n: int, B: int) -> np.ndarray:
    """(ceil(n/B), B) image indices; the last batch is filled with images from the start."""
    nb = -(-n // B)
    return (np.arange(nb * B, dtype=np.int64) % n).reshape(nb, B)


def choose_path(work: LayerWorkload, cfg: CPUConfig, masks: np.ndarray) -> str:
    """The executor's path for a gated layer with (n, C_out, P) masks (``auto`` resolved per batch)."""
    g = work.spec.gate
    if g.base_channels == 0 and channel_constant(masks):
        return "channel_slice"
    if g.S >= work.spec.out_shape[0]:
        return "spatial_gather"
    if g.S == 1 and g.b == 1 and cfg.unstructured != "gather":
        return "dense_masked" if cfg.unstructured == "dense_masked" else "auto"
    return "channel_block_gather"


def sparse(work: LayerWorkload, cfg: CPUConfig, gate_masks: np.ndarray | None,
           act_masks: np.ndarray | None = None, act_density: float | None = None) -> list[Figures]:
    """Per image, the executor's time on the real gate masks (``act_masks``: structurally zero
    input channels, used by the channel-slice path; ``act_density`` is not used)."""
    if gate_masks is None or not work.gated:
        return [dense(work, cfg)]
    s = _shape(work, cfg)
    n = gate_masks.shape[0]
    masks = np.ascontiguousarray(gate_masks.reshape(n, s.c_out, -1))
    idx = _batches(n, s.B)
    path = choose_path(work, cfg, masks)
    S = min(work.spec.gate.S, s.c_out)
    per_batch = []
    if path == "channel_slice":
        live = _live_inputs(s, act_masks)
        for a in active_channels(masks, idx):
            per_batch.append(_figures(_channel_slice(cfg, s, int(a), live), cfg, s, path,
                                      float(s.B * s.c_out * s.E), work.dense_macs))
    else:
        rows = block_rows(masks, idx, S)
        n_blocks = rows.shape[1]
        for r in rows:
            options = {}
            if path in ("spatial_gather", "channel_block_gather", "auto"):
                options["spatial_gather" if S >= s.c_out else "channel_block_gather"] = _block_path(cfg, s, r, S)
            if path in ("dense_masked", "auto"):
                options["dense_masked"] = _dense_masked(cfg, s, r)
            name = min(options, key=lambda k: options[k].us)
            per_batch.append(_figures(options[name], cfg, s, name, float(s.B * s.E * n_blocks), work.dense_macs))
    return [per_batch[i // s.B] for i in range(n)]


def granularity(work: LayerWorkload, cfg: CPUConfig) -> str:
    g = work.spec.gate
    if g is None:
        return "none (ungated)"
    if g.base_channels == 0:
        return "output channel if the masks are per channel (weight slicing), else as the gate grid"
    if g.S >= work.spec.out_shape[0]:
        return "output pixel (gathered GEMM rows)"
    if g.S == 1 and g.b == 1:
        return f"output element ({cfg.unstructured}: per-channel gather or dense + mask)"
    return f"channel block of {g.S} x output pixel (one gathered GEMM per block)"
