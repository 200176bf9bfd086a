"""cdg: Contrastive Dual Gating and dense self-supervised training (PyTorch)."""

__version__ = "0.1.0"
