"""The GPU: a conv as an implicit-GEMM kernel of thread-block tiles, gating exploited per tile.
Docs: ``docs/hwsim-gpu.md``.

``config.py`` the config class; ``kernels.py`` numba tile activity and block scheduler;
``model.py`` the model contract.
"""
from hwsim.models.gpu import model
from hwsim.models.gpu.config import GPUConfig
from hwsim.models.registry import Model

MODEL = Model(name="gpu", config_class=GPUConfig, dense=model.dense, sparse=model.sparse,
              granularity=model.granularity, loss_columns=model.LOSS_COLUMNS)
