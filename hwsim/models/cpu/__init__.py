"""The host CPU running torch: dense conv2d vs the sparse executor, op by op (call cost, GEMM-shape
efficiency, cache / DRAM bandwidth, indexed row copies). Docs: ``docs/hwsim-cpu.md``.

``config.py`` the config class (figures from ``python -m cdg.calibrate_cpu``); ``kernels.py``
numba mask counts; ``model.py`` the model contract.
"""
from hwsim.models.cpu import model
from hwsim.models.cpu.config import CPUConfig
from hwsim.models.registry import Model

MODEL = Model(name="cpu", config_class=CPUConfig, dense=model.dense, sparse=model.sparse,
              granularity=model.granularity, loss_columns=model.LOSS_COLUMNS)
