"""The network's layer graph (networkx) and the inter-layer effects hwsim reports.

Nodes are layers (attribute ``spec``); an edge P -> L means L reads P's output tensor
(``LayerSpec.inputs``). A residual tensor is kept alive from its producer until its last
consumer; ``live_bytes`` gives, per layer, the activation bytes that must be held (on chip or
in DRAM) while it runs: its own input and output plus every earlier tensor still needed later.
"""
from __future__ import annotations

from typing import Sequence

import networkx as nx

from hwsim.trace.errors import HwsimError
from hwsim.trace import LayerSpec


def build_graph(specs: Sequence[LayerSpec], source: str = "layers") -> nx.DiGraph:
    graph = nx.DiGraph()
    for order, spec in enumerate(specs):
        graph.add_node(spec.name, spec=spec, order=order)
    for spec in specs:
        for producer in spec.inputs:
            if producer not in graph:
                raise HwsimError(source, f"layer {spec.name!r}.inputs", f"unknown layer {producer!r}")
            graph.add_edge(producer, spec.name)
    if not nx.is_directed_acyclic_graph(graph):
        raise HwsimError(source, "inputs", "the layer graph has a cycle")
    return graph


def tensor_bytes(spec: LayerSpec, word_bytes: int) -> int:
    c, h, w = spec.out_shape
    return c * h * w * word_bytes


def live_bytes(specs: Sequence[LayerSpec], word_bytes: int) -> dict[str, int]:
    """Activation bytes alive while each layer runs (layers run in table order)."""
    graph = build_graph(specs)
    order = {s.name: i for i, s in enumerate(specs)}
    last_use = {s.name: max((order[c] for c in graph.successors(s.name)), default=order[s.name])
                for s in specs}
    out = {}
    for i, spec in enumerate(specs):
        live = sum(tensor_bytes(p, word_bytes) for p in specs[:i] if last_use[p.name] >= i)
        c, h, w = spec.in_shape
        own_input = 0 if spec.inputs else c * h * w * word_bytes
        out[spec.name] = live + own_input + tensor_bytes(spec, word_bytes)
    return out
