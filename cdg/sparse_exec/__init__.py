"""Sparse execution of gated networks: inference that really skips the work the gates switch off.

``network.build_sparse`` turns a gated backbone (eval mode) into one whose gated convs run only
their active work (gather the active positions' input patches, one GEMM, scatter-add); its output
equals the masked dense model's. ``measure`` times it against the plain dense network
(``python -m cdg.execute``; ``docs/execution.md``).
"""
