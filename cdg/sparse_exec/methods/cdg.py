"""CDG's decisions for the sparse executor: the same standardised block-pooled saliency of the
base partial sum and the same comparison p > μ + σ Δ as ``cdg.gating.methods.cdg`` in eval."""
from __future__ import annotations

import torch

from cdg.gating.ops import STANDARDISE_EPS, gate_dtype, pool_blocks, sample_stats
from cdg.sparse_exec.split import SplitExecutor


def decide(layer, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    p = pool_blocks(y_base.to(gate_dtype(y_base)), *block)
    mean, std = sample_stats(p, STANDARDISE_EPS)
    return p > torch.addcmul(mean, layer.threshold.detach().view(1, -1, 1, 1).to(p.dtype), std)


def executor(layer) -> SplitExecutor:
    return SplitExecutor(layer, decide)
