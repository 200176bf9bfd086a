"""The systolic array (SCALE-Sim v3's mapping and counts, gated work per image on top): OS, WS and
IS dataflows; sparse modes gate, skip and compact. Docs: ``docs/hwsim.md``.

``config.py`` the config class; ``kernels.py`` numba demand streams and tile reductions;
``counts.py`` cycles and accesses; ``accumulation.py`` where partial sums live (faithful, the
default, or SCALE-Sim's counting); ``bandwidth.py`` and ``bandwidth_kernels.py`` the stalls of a
finite SRAM interface (``bandwidth_mode: user``, SCALE-Sim's USER mode); ``model.py`` the model
contract. The SCALE-Sim reference runner
used by the validation tests and benches is ``hwsim/interop/scalesim_ref.py``.
"""
from hwsim.models.registry import Model
from hwsim.models.systolic import model
from hwsim.models.systolic.config import SystolicConfig

MODEL = Model(name="systolic", config_class=SystolicConfig, dense=model.dense, sparse=model.sparse,
              granularity=model.granularity, loss_columns=model.LOSS_COLUMNS)
