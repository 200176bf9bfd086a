"""Test-wide settings: one thread (2-core CI machines collapse with more), no GPU needed."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # hwsim tests do not need torch
    pass
