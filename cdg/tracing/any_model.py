"""A dense layer table from any torch model, so users can simulate what they deploy.

``python -m cdg.trace --model torchvision:resnet50 --input-size 224 --out DIR`` writes a trace
without masks (every layer dense) that every hwsim model reads. The model is traced with
``torch.fx`` and its shapes propagated on one dummy image; each ``nn.Conv2d`` (groups and
depthwise included), ``nn.Linear`` and ``nn.MultiheadAttention`` becomes rows of the table, and a
row's ``inputs`` are the nearest layers upstream of it in the graph (through activations,
norms, pooling, additions, concatenations, reshapes), which is what hwsim's live-byte
accounting needs. Lowering, as GEMMs the accelerators run:

- ``nn.Linear`` on a vector: a ``linear`` row; on tokens (N x D): a 1x1 conv over an N x 1 map,
  so the GEMM has N rows;
- ``nn.MultiheadAttention`` (batch first or not): the input projection (D -> 3D), the scores
  Q K^T and the weighted sum A V as grouped 1x1 convs with one group per head (per head: N x
  d_head by d_head x N, and N x N by N x d_head), and the output projection.

What is not a row: elementwise work, norms, softmax, pooling (no MACs an accelerator model
prices here). Dilated convs are refused (not modelled), as is a model ``torch.fx`` cannot trace.
"""
from __future__ import annotations

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from hwsim.trace import LayerSpec, make_layer
from hwsim.trace.errors import UserError

LAYER_TYPES = (nn.Conv2d, nn.Linear, nn.MultiheadAttention)


def load_model(ref: str) -> nn.Module:
    """``torchvision:NAME`` (untrained weights: a layer table needs shapes, not values)."""
    kind, _, name = ref.partition(":")
    if kind != "torchvision" or not name:
        raise UserError(f"--model {ref!r}: expected torchvision:NAME (e.g. torchvision:resnet50)")
    import torchvision

    try:
        return torchvision.models.get_model(name, weights=None)
    except ValueError:
        raise UserError(f"--model {ref!r}: torchvision has no model {name!r} "
                        "(torchvision.models.list_models() lists them)") from None


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if not hasattr(meta, "shape") and isinstance(meta, (tuple, list)):  # a tuple of tensors
        meta = meta[0]
    return tuple(meta.shape)


def _producers(node: fx.Node, layers: set[str]) -> list[str]:
    """Nearest layer nodes upstream of ``node``'s inputs (breadth first, in graph order)."""
    found: list[str] = []
    seen: set[fx.Node] = set()
    stack = [a for a in node.all_input_nodes]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.name in layers:
            found.append(current.name)
        else:
            stack.extend(current.all_input_nodes)
    return sorted(set(found), key=found.index)


def _conv_rows(name: str, m: nn.Conv2d, shape: tuple[int, ...], inputs: list[str]) -> list[LayerSpec]:
    if m.dilation not in ((1, 1), 1):
        raise UserError(f"layer {name}: dilation {m.dilation} is not modelled")
    if isinstance(m.padding, str):
        raise UserError(f"layer {name}: padding={m.padding!r} (a string) is not modelled; use integer padding")
    return [make_layer(name, "conv", shape[1:], m.out_channels, m.kernel_size, m.stride, m.padding,
                       groups=m.groups, inputs=inputs, source=name)]


def _linear_rows(name: str, m: nn.Linear, shape: tuple[int, ...], inputs: list[str]) -> list[LayerSpec]:
    if len(shape) == 2:
        return [make_layer(name, "linear", (m.in_features, 1, 1), m.out_features, inputs=inputs, source=name)]
    tokens = 1
    for size in shape[1:-1]:
        tokens *= size
    return [make_layer(name, "conv", (m.in_features, tokens, 1), m.out_features, inputs=inputs, source=name)]


def _attention_rows(name: str, m: nn.MultiheadAttention, shape: tuple[int, ...], inputs: list[str]) -> list[LayerSpec]:
    tokens = shape[1] if m.batch_first else shape[0]
    d, heads = m.embed_dim, m.num_heads
    if m.kdim != d or m.vdim != d:
        raise UserError(f"layer {name}: attention with kdim/vdim != embed_dim is not modelled")
    qkv = make_layer(f"{name}.in_proj", "conv", (d, tokens, 1), 3 * d, inputs=inputs, source=name)
    scores = make_layer(f"{name}.scores", "conv", (d, tokens, 1), heads * tokens, groups=heads,
                        inputs=[qkv.name], source=name)
    values = make_layer(f"{name}.values", "conv", (heads * tokens, tokens, 1), d, groups=heads,
                        inputs=[scores.name, qkv.name], source=name)
    out = make_layer(f"{name}.out_proj", "conv", (d, tokens, 1), d, inputs=[values.name], source=name)
    return [qkv, scores, values, out]


@torch.no_grad()
def layer_table(model: nn.Module, input_size: int, in_channels: int = 3) -> list[LayerSpec]:
    """The model's dense layer table at ``input_size`` x ``input_size`` (batch 1, eval mode)."""
    model = model.eval()
    try:
        graph = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds; the message is what the user needs
        raise UserError(f"torch.fx cannot trace this model: {str(exc).splitlines()[0]}") from None
    ShapeProp(graph).propagate(torch.zeros(1, in_channels, input_size, input_size))
    modules = dict(graph.named_modules())
    layer_nodes = [n for n in graph.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], LAYER_TYPES)]
    names = {n.name for n in layer_nodes}
    last_row: dict[str, str] = {}  # fx node name -> its last table row (attention has four)
    rows: list[LayerSpec] = []
    for node in layer_nodes:
        module = modules[node.target]
        inputs = [last_row[p] for p in _producers(node, names)]
        shape = _shape(node.args[0])
        if isinstance(module, nn.Conv2d):
            new = _conv_rows(node.target, module, shape, inputs)
        elif isinstance(module, nn.Linear):
            new = _linear_rows(node.target, module, shape, inputs)
        else:
            new = _attention_rows(node.target, module, shape, inputs)
        rows += new
        last_row[node.name] = new[-1].name
    if not rows:
        raise UserError("the model has no Conv2d, Linear or MultiheadAttention layer")
    return rows
