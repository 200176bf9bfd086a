"""Interleaved timing: warm-up, then every repetition runs each candidate once in turn, so machine
noise (other processes on shared cores) hits all of them alike; medians and quartiles in ms."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch


def spread(samples_ms: list[float]) -> dict[str, float]:
    q25, median, q75 = np.percentile(np.asarray(samples_ms, dtype=np.float64), [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75)}


@torch.no_grad()
def interleaved(fns: dict[str, Callable[[], object]], warmup: int, repetitions: int,
                device: torch.device, clock: str = "wall") -> dict[str, dict[str, float]]:
    """{name: spread of its ms} over ``repetitions`` interleaved runs after ``warmup``. ``clock``:
    "wall" (``perf_counter``) or "cpu" (this process's CPU time, ``process_time``: on a machine shared
    with other jobs it leaves out the time the process waited for a core; meaningful on CPU with
    one thread only, since it sums the time of all threads)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(repetitions):
        order = list(fns) if rep % 2 == 0 else list(fns)[::-1]  # alternate who goes first
        for name in order:
            sync()
            start = now()
            fns[name]()
            sync()
            samples[name].append((now() - start) * 1e3)
    return {name: spread(values) for name, values in samples.items()}
