"""The timing loop: warm-up, interleaved repetitions, medians and quartiles."""
from __future__ import annotations

import pytest
import torch

from cdg.sparse_exec.timing import interleaved, spread


def test_spread_is_median_and_quartiles():
    assert spread([5.0, 1.0, 3.0, 2.0, 4.0]) == {"median": 3.0, "q25": 2.0, "q75": 4.0}


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_interleaved_runs_each_fn_warmup_plus_repetitions_times(clock):
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    out = interleaved(fns, warmup=2, repetitions=3, device=torch.device("cpu"), clock=clock)
    assert calls.count("a") == calls.count("b") == 5
    assert calls[4:] == ["a", "b", "b", "a", "a", "b"]  # who goes first alternates
    assert set(out) == {"a", "b"} and all(v["q25"] <= v["median"] <= v["q75"] for v in out.values())
