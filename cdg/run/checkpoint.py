"""Checkpoints that make ``--resume`` bit-identical to an uninterrupted run.

A checkpoint holds the model (all encoders, queues and heads), optimiser, scheduler,
the position in training (epoch, step within the epoch, global step) and every RNG
state (Python, NumPy, torch CPU and CUDA). It is written to a temp file and renamed,
so a kill mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwsim.trace.errors import UserError
from hwsim.trace.fileio import atomic_write_with

FORMAT = "cdg-checkpoint"
VERSION = 1


def capture_rng() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write_with(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; any problem is a one-line ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        data = path.read_bytes()
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for truncated/corrupted files
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}); it may be truncated or corrupted") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a cdg checkpoint (field 'format' missing or wrong)")
    if payload.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})")
    for key in ("model", "config", "epoch", "global_step", *require):
        if key not in payload:
            raise UserError(f"{path}: checkpoint field '{key}' is missing")
    return payload


def load_model_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Strict load that reports a mismatch in one line instead of a wall of keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong_shape:
        detail = (
            f"shape of {wrong_shape[0]} is {tuple(state[wrong_shape[0]].shape)}, model has {tuple(own[wrong_shape[0]].shape)}"
            if wrong_shape
            else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        )
        raise UserError(
            f"checkpoint {path} does not match the model ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong_shape)} mis-shaped tensors; first: {detail})"
        )
    module.load_state_dict(state)
