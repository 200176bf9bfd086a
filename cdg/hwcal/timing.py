"""Median wall-clock time of a callable: warm-up calls, then repetitions until a time budget or a
count is reached (a loaded machine gets enough samples for a stable median)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_us(fn: Callable[[], object], warmup: int = 2, min_reps: int = 5, max_reps: int = 200,
              budget_s: float = 0.05) -> float:
    """Median microseconds of one call of ``fn`` (``budget_s``: stop repeating after that long,
    once ``min_reps`` are in)."""
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < max_reps and (len(samples) < min_reps or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)
