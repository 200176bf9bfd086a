"""Which runs are replicates of one experiment: the keys that group seeds in ``analysis.pareto``.

Averaging over seeds is only meaningful between runs that trained the same thing. Two runs are the
same *experiment* when their resolved ``config.yaml`` agree on everything except the replicate seed,
the settings that do not change what is trained (device, threads, data location, logging, run
name, trace size) and the gate section, whose structure is what a co-design study compares; and
their ``summary.json`` agree on the budget actually trained (``epochs``, ``steps``). The gate
section outside the structure columns (warm-up, ramp, regulariser, ...) is the *gate recipe*: a
gated structure is one candidate per recipe, so two recipes are never averaged either.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

# (section, key) pairs that change neither the model trained nor its evaluation
RUNTIME_KEYS = {
    ("train", "seed"), ("train", "device"), ("train", "threads"), ("train", "progress"),
    ("train", "log_every_steps"), ("train", "compile"), ("data", "data_dir"), ("data", "download"),
    ("data", "num_workers"),
}
RUNTIME_SECTIONS = ("run", "gate")
# gate keys that are structure columns of points.csv (or only size the trace), not the recipe
GATE_STRUCTURE_KEYS = ("method", "channel_block", "spatial_block", "groups", "target_reduction",
                       "target_density", "branches", "align_weight", "trace_images", "trace_act_images")
DIGEST_CHARS = 8


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _training_config(cfg: Mapping[str, Any]) -> dict:
    out: dict = {}
    for section, body in cfg.items():
        if section in RUNTIME_SECTIONS:
            continue
        if isinstance(body, Mapping):
            out[section] = {k: v for k, v in body.items() if (section, k) not in RUNTIME_KEYS}
        else:
            out[section] = body
    return out


def experiment_key(cfg: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """``<dataset><px>/<arch>x<width>/<ssl>/<epochs>ep/b<batch>#<digest>``: readable, and the digest
    of everything else that makes runs different experiments (module docstring)."""
    body = _training_config(cfg)
    budget = {"epochs": summary.get("epochs"), "steps": summary.get("steps")}
    data, model = cfg.get("data") or {}, cfg.get("model") or {}
    train, method = cfg.get("train") or {}, cfg.get("method") or {}
    epochs = budget["epochs"] if budget["epochs"] is not None else train.get("epochs")
    def v(x: Any) -> str:
        return "?" if x is None else str(x)

    label = (f"{v(data.get('dataset'))}{data.get('image_size') or ''}/{v(model.get('arch'))}x{v(model.get('width'))}/"
             f"{v(method.get('name'))}/{v(epochs)}ep/b{v(train.get('batch_size'))}")
    return f"{label}#{_digest({'config': body, 'budget': budget})}"


def gate_recipe(cfg: Mapping[str, Any]) -> str | None:
    """Digest of the gate settings outside the structure columns; None for a dense run."""
    gate = cfg.get("gate") or {}
    if not isinstance(gate, Mapping) or gate.get("method", "none") == "none":
        return None
    return _digest({k: v for k, v in gate.items() if k not in GATE_STRUCTURE_KEYS})
