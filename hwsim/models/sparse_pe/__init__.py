"""The sparse-PE accelerator (SCNN / Eyeriss-v2 / SparTen family): a PE array that skips gated-off
outputs and, optionally, zero input activations. Docs: ``docs/hwsim-sparse-pe.md``.

``config.py`` the config class; ``kernels.py`` numba window counts, partitions and work queue;
``model.py`` the model contract; ``cartesian.py`` SCNN's Cartesian-product packing, halo
exchange and scatter crossbar (``packing: cartesian``, off by default).
"""
from hwsim.models.sparse_pe import model
from hwsim.models.sparse_pe.config import SparsePEConfig
from hwsim.models.registry import Model

MODEL = Model(name="sparse_pe", config_class=SparsePEConfig, dense=model.dense, sparse=model.sparse,
              granularity=model.granularity, loss_columns=model.LOSS_COLUMNS)
