"""CGNet's decisions for the sparse executor: its non-affine BatchNorm (running statistics) of the
base partial sum against the per-channel thresholds, one decision per output element."""
from __future__ import annotations

import torch

from cdg.sparse_exec.split import SplitExecutor


def decide(layer, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    return layer.normalise(y_base) > layer.threshold.detach().view(1, -1, 1, 1)


def executor(layer) -> SplitExecutor:
    return SplitExecutor(layer, decide)
