"""Shared by the cdg tests: the tiny digits run (seconds on one CPU thread), reading its run
directory back, and running a cdg command line in a fresh process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent.parent

TINY = [
    "data.image_size=8",
    "model.width=0.125",
    "method.proj_hidden_dim=32",
    "method.proj_dim=16",
    "method.pred_hidden_dim=16",
    "method.queue_size=96",
    "train.batch_size=128",
    "train.epochs=2",
    "optim.warmup_epochs=1",
    "eval.knn_every_epochs=1",
    "eval.linear_epochs=2",
    "train.progress=false",
    "train.threads=1",
]


def tiny(tmp_path, name, *extra):
    return [*TINY, f"run.dir={tmp_path}", f"run.name={name}", *extra]


def records(run_dir, event=None):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in lines]
    return [r for r in out if event is None or r["event"] == event]


def final_state(run_dir):
    """The final model state, read (and verified) by the product's one checkpoint reader."""
    from cdg.run.checkpoint import load_checkpoint

    return load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")["model"]


def run_cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=300)
