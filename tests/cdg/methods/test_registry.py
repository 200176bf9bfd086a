"""The SSL method registry: every entry names a real class whose arguments are the entry's fields."""
import inspect
import subprocess
import sys
import typing

import pytest

from cdg.config import OptimConfig
from cdg.methods.base import SSLMethod
from cdg.methods.registry import METHOD_SPECS, METHODS, method_class

from tests.cdg.helpers import REPO


@pytest.mark.parametrize("name", METHODS)
def test_each_entry_matches_its_class(name):
    spec = METHOD_SPECS[name]
    cls = method_class(name)
    assert issubclass(cls, SSLMethod) and cls.name == name
    params = list(inspect.signature(cls.__init__).parameters)
    assert params[:2] == ["self", "backbone"] and params[2:] == list(spec.presets)
    assert set(spec.optim) == set(typing.get_args(OptimConfig.model_fields["name"].annotation))
    assert len(spec.augment.blur) == len(spec.augment.solarize) == 2 and len(spec.augment.jitter) == 4


def test_loading_and_resolving_a_config_does_not_import_torch():
    code = (
        "import sys; from cdg.config import load_config; "
        "[load_config(None, [f'method.name={m}']) for m in ('simclr', 'moco', 'byol', 'simsiam')]; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
