"""File names of a run directory and of its trace: the one place ``cdg`` (which writes them),
``hwsim`` and ``analysis`` (which read them) take them from.

A run directory ``runs/<name>/`` holds ``config.yaml`` (the resolved config), ``metrics.jsonl``,
``summary.json``, ``checkpoints/last.pt`` and ``trace/``; a trace directory holds ``trace.json``,
``MANIFEST.json`` and ``masks/`` (``docs/trace-format.md``).
"""
from __future__ import annotations

# run directory
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
TRACE_DIR = "trace"

# trace directory
TRACE_JSON = "trace.json"
MANIFEST = "MANIFEST.json"
MASK_DIR = "masks"
EXECUTION_FILE = "execution.json"  # measured sparse vs dense latency (cdg.execute, docs/execution.md)
