"""What every sparse layer executor shares: the wrapped gated layer, its candidate paths, the
path chosen by measurement (``network.tune``) and the work its last forward executed."""
from __future__ import annotations

import torch
from torch import nn

from hwsim.trace.errors import UserError


def output_like(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Zeros of ``shape`` in ``x``'s dtype, device and memory layout (channels_last or NCHW)."""
    fmt = torch.channels_last if (x.dim() == 4 and not x.is_contiguous()
                                  and x.is_contiguous(memory_format=torch.channels_last)) else torch.contiguous_format
    return torch.zeros(shape, dtype=x.dtype, device=x.device).contiguous(memory_format=fmt)


def norm_affine(norm: nn.Module | None, channels: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of an eval-mode BatchNorm (identity for None), so that it can be
    applied to the computed outputs only."""
    if norm is None:
        return torch.ones(channels, dtype=like.dtype, device=like.device), torch.zeros(channels, dtype=like.dtype, device=like.device)
    if norm.training or norm.running_var is None:
        raise UserError("sparse execution needs the model in eval mode with BatchNorm running statistics")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale.detach().to(like.dtype), shift.detach().to(like.dtype)


class Executor(nn.Module):
    """Sparse form of one gated conv. Subclasses set ``candidates`` (path names, valid for the
    layer) and implement ``forward`` and ``gate_density``; ``path`` is the one in use (the first
    candidate until ``network.tune`` measured them). After each forward ``executed`` holds the MACs
    the path performed, ``dense_macs`` those of the dense conv, and ``gate_density()`` the
    fraction of the gated work the gates switched on."""

    def __init__(self, layer: nn.Module, candidates: list[str]):
        super().__init__()
        self.layer = layer
        self.name = layer.spec.name
        self.candidates = list(candidates)
        self.path = self.candidates[0]
        self.executed = 0
        self.dense_macs = 0

    def set_path(self, path: str) -> None:
        if path not in self.candidates:
            raise UserError(f"layer {self.name}: path {path!r} not available (valid: {', '.join(self.candidates)})")
        self.path = path

    def _conv_macs(self, n: int, out_hw: tuple[int, int], c_in: int, c_out: int) -> int:
        k = self.layer.kernel_size[0] * self.layer.kernel_size[1]
        return int(n * out_hw[0] * out_hw[1] * c_in * c_out * k)

    def gate_density(self) -> float:
        return 1.0
