"""The trace contract between cdg (training, which writes traces) and hwsim / analysis (which read
them): numpy and pyyaml only, importing nothing else of hwsim, so a training script and the
simulator share exactly one implementation. Format: ``docs/trace-format.md``.

One job per module: ``schema`` (layer table: GateGrid, LayerSpec), ``stats`` (LayerStats),
``masks`` (decision grid <-> full masks, bit packing), ``io`` (TraceWriter, load_trace,
manifest), ``layout`` (run-dir and trace file names), ``fileio`` (atomic writes, the YAML
reader), ``errors`` (the one user-error family), ``synthetic`` (seeded synthetic gated traces),
``mask_maps`` (per-stage gate maps from stored masks, for pictures).
This package face re-exports the public names.
"""
from hwsim.trace.io import FORMAT_VERSION, Trace, TraceLayer, TraceWriter, load_trace, sha256, verify_manifest
from hwsim.trace.masks import expand_gate_blocks, pack_bits, reduce_gate_masks, unpack_bits
from hwsim.trace.schema import OPS, GateGrid, LayerSpec, layer_from_json, make_layer, validate_layer, validate_layer_table
from hwsim.trace.stats import HIST_BINS, LayerStats, compute_stats, density_histogram, stats_from_json

__all__ = ["FORMAT_VERSION", "Trace", "TraceLayer", "TraceWriter", "load_trace", "sha256", "verify_manifest",
           "expand_gate_blocks", "pack_bits", "reduce_gate_masks", "unpack_bits", "OPS", "GateGrid", "LayerSpec",
           "layer_from_json", "make_layer", "validate_layer", "validate_layer_table", "HIST_BINS", "LayerStats",
           "compute_stats", "density_histogram", "stats_from_json"]
