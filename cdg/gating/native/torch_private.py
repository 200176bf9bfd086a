"""The one place in cdg that touches private or low-level torch APIs (each wrapped in one function).

Why they are used: the CDG gate's backward writes its gradients into memory it owns instead of
fresh allocations, which needs an out= form of the sigmoid backward and knowing whether autograd
frees its saved tensors after this backward. A torch upgrade that changes either is fixed here.
"""
from __future__ import annotations

import torch


def sigmoid_backward(grad: torch.Tensor, sig: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = grad * sig * (1 - sig)`` (aten's sigmoid backward with an output buffer; ``out`` may be ``sig``)."""
    return torch.ops.aten.sigmoid_backward.grad_input(grad, sig, grad_input=out)


def saved_tensors_reusable() -> bool:
    """Inside a backward: whether autograd frees the saved tensors after it (no ``retain_graph``),
    so that their memory may hold gradients (torch's compiled autograd donates buffers alike)."""
    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return keep_graph is not None and not keep_graph()
