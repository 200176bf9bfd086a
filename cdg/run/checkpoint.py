"""Checkpoints that make ``--resume`` bit-identical to an uninterrupted run, and that are
safe to load from a file someone else gave you.

A checkpoint holds the model (all encoders, queues and heads), optimiser, scheduler,
the position in training (epoch, step within the epoch, global step), the gate controller
and every RNG state (Python, NumPy, torch CPU and CUDA). It is written to a temp file and
renamed, so a kill mid-write leaves the previous checkpoint intact.

This module is the one reader of checkpoints (``--resume``, ``cdg.eval``, ``cdg.trace`` and
``load_trained`` all come here), and it guarantees two things:

* **No code runs from a file.** ``torch.load(weights_only=True)``: the unpickler accepts only
  tensors and plain data (dict, list, tuple, str, numbers, bool, None). To keep every part of a
  checkpoint inside that set, the RNG states are stored as plain data when *saving* (NumPy's key
  array as a list of ints) and converted back on restore. A file that names any other Python
  object (a crafted ``__reduce__``, say) is refused before anything in it is built.
* **Corruption is detected.** The payload carries ``sha256``, a digest of its whole content
  (every key, every scalar and every tensor's dtype, shape and bytes, in a fixed order),
  computed when saving and recomputed after loading. A flipped byte in a tensor's storage, in a
  scalar or in the digest itself gives a one-line ``UserError`` naming the file. The digest is
  over the content rather than the zip container's bytes so that the file stays an ordinary
  ``torch.save`` archive (``torch.load`` reads it) and the hash lives inside the one file that is
  renamed into place, so the two can never be out of step.

Checkpoints written before this format (``version`` 1: no digest, NumPy arrays inside) are
refused with a message saying so: they can be neither verified nor loaded without unpickling
arbitrary objects (see ``docs/reliability.md``).
"""
from __future__ import annotations

import hashlib
import io
import pickle
import random
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwsim.trace.errors import UserError
from hwsim.trace.fileio import atomic_write_with

FORMAT = "cdg-checkpoint"
VERSION = 2
DIGEST_KEY = "sha256"


def capture_rng() -> dict[str, Any]:
    """Every RNG state, as plain data and tensors only (so ``weights_only`` can load it)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [int(version), [int(v) for v in mt_state], gauss],
        "numpy": {"kind": str(kind), "keys": [int(v) for v in keys], "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in mt_state), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], np.asarray(numpy_state["keys"], dtype=np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def content_digest(obj: Any) -> str:
    """SHA-256 over a payload's whole content in a fixed order; types outside what
    ``weights_only`` loads are a programming error (``TypeError``), never silently skipped."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(b"T" + repr((str(t.dtype), tuple(t.shape))).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"D" + struct.pack("<q", len(obj)))
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update((b"L" if isinstance(obj, list) else b"U") + struct.pack("<q", len(obj)))
        for value in obj:
            _feed(h, value)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(b"S" + type(obj).__name__.encode() + b":" + repr(obj).encode() + b";")
    else:
        raise TypeError(f"checkpoint payload holds a {type(obj).__name__}, which weights_only loading refuses")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "version": VERSION, **{k: v for k, v in payload.items() if k != DIGEST_KEY}}
    payload[DIGEST_KEY] = content_digest(payload)
    atomic_write_with(path, lambda handle: torch.save(payload, handle))


def _unsafe_global(exc: Exception) -> str | None:
    """The Python object a refused pickle names (torch says 'Unsupported global: GLOBAL x.y')."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return found.group(1) if found else None


def load_checkpoint(path: Path, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load, verify and sanity-check a checkpoint; any problem is a one-line ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"checkpoint {path} cannot be read ({exc.strerror or exc})") from None
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = _unsafe_global(exc)
        if name is not None and name.startswith("numpy"):
            raise UserError(
                f"checkpoint {path} was written by an older cdg (NumPy objects inside, no content hash); "
                "it cannot be loaded safely or verified: train it again"
            ) from None
        what = f" (it names {name})" if name else ""
        raise UserError(f"checkpoint {path} refused: it holds Python objects other than tensors and plain data{what}; "
                        "nothing in it was run") from None
    except Exception as exc:  # torch raises many types for truncated/corrupted files
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}); it may be truncated or corrupted") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a cdg checkpoint (field 'format' missing or wrong)")
    if payload.get("version") == 1:
        raise UserError(f"checkpoint {path} was written by an older cdg (version 1, no content hash); "
                        "it cannot be verified: train it again")
    if payload.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})")
    stored = payload.pop(DIGEST_KEY, None)
    try:
        actual = content_digest(payload)
    except TypeError:
        actual = None
    if not isinstance(stored, str) or stored != actual:
        raise UserError(f"checkpoint {path} is corrupted: its content does not match the SHA-256 stored in it")
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
