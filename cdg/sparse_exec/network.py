"""From a gated backbone to the two networks that are timed against each other: ``build_sparse``
(every gated conv replaced by its sparse executor) and ``build_dense`` (every gated conv replaced
by the plain conv, plus the BatchNorm a predictor method adopted: dense torch); ``tune`` picks each
executor's fastest path on a real input. Both leave the given backbone untouched."""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from hwsim.trace.errors import UserError
from cdg.gating.base import GatedConv, gated_layers
from cdg.sparse_exec.base import Executor
from cdg.sparse_exec.gather import dense_conv
from cdg.sparse_exec.registry import executor_for


class DenseOp(nn.Module):
    """The dense conv a gated layer replaces (and its adopted BatchNorm): the speed baseline."""

    def __init__(self, layer: GatedConv):
        super().__init__()
        self.register_buffer("weight", layer.weight.detach(), persistent=False)
        self.stride, self.padding = layer.stride[0], layer.padding[0]
        self.norm = getattr(layer, "norm", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = dense_conv(x, self.weight, self.stride, self.padding)
        return y if self.norm is None else self.norm(y)


def _replace(backbone: nn.Module, make) -> nn.Module:
    if backbone.training:
        raise UserError("sparse execution needs the backbone in eval mode (call .eval() first)")
    net = copy.deepcopy(backbone)
    layers = gated_layers(net)
    if not layers:
        raise UserError("the model has no gated convolution: nothing to execute sparsely")
    for name, layer in layers:
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, make(layer))
    return net.eval()


@torch.no_grad()
def build_sparse(backbone: nn.Module) -> nn.Module:
    return _replace(backbone, executor_for)


@torch.no_grad()
def build_dense(backbone: nn.Module) -> nn.Module:
    return _replace(backbone, DenseOp)


def executors(net: nn.Module) -> list[tuple[str, Executor]]:
    return [(name, m) for name, m in net.named_modules() if isinstance(m, Executor)]


@torch.no_grad()
def layer_inputs(net: nn.Module, x: torch.Tensor, kinds=(nn.Conv2d, Executor, DenseOp)) -> dict[str, torch.Tensor]:
    """The input of every conv-like module of ``net`` (by module name) in one forward of ``x``."""
    inputs: dict[str, torch.Tensor] = {}
    modules = [(name, m) for name, m in net.named_modules() if isinstance(m, kinds)]
    inner = tuple(f"{name}." for name, m in modules if isinstance(m, Executor))  # the gated layer an executor wraps
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=name: inputs.__setitem__(name, inp[0]))
             for name, m in modules if not name.startswith(inner)]
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return inputs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def tune(net: nn.Module, x: torch.Tensor, repetitions: int = 3, clock: str = "wall") -> dict[str, str]:
    """Set each executor of ``net`` to its fastest path on its input in a forward of ``x`` (median of
    ``repetitions`` after one warm-up run of each path); returns the chosen path by layer."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    inputs = layer_inputs(net, x, (Executor,))
    chosen = {}
    for name, ex in executors(net):
        if len(ex.candidates) > 1:
            times = {}
            for path in ex.candidates:
                ex.path = path
                ex(inputs[name])
                runs = []
                for _ in range(repetitions):
                    sync(x.device)
                    start = now()
                    ex(inputs[name])
                    sync(x.device)
                    runs.append(now() - start)
                times[path] = statistics.median(runs)
            ex.path = min(times, key=times.get)
        chosen[name] = ex.path
    return chosen
