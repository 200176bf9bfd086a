"""The gate registry (cdg.gating.registry): one table, read torch-free by the config, and the layering
it allows (cdg.tracing below cdg.gating)."""
import subprocess
import sys

import pytest

from hwsim.trace.errors import UserError
from cdg.config import GateConfig
from cdg.gating import registry


def test_the_config_offers_exactly_the_registered_methods():
    assert registry.names() == ("cdg", "cgnet", "fbs", "dgnet")
    assert GateConfig.model_fields["method"].annotation.__args__ == ("none", *registry.names())
    assert registry.names(hw_aware=True) == ("cdg", "dgnet")
    assert registry.names(needs_target=False) == ("fbs",)
    for name in registry.names():
        method = registry.method(name)
        assert method.name == name and method.layer.impl is method


def test_an_unknown_method_is_a_one_line_user_error():
    with pytest.raises(UserError, match=r"^gate\.method: unknown method 'x' \(valid: cdg, cgnet, fbs, dgnet\)$"):
        registry.method("x")


@pytest.mark.parametrize("module, forbidden", [
    ("cdg.config", "torch"),                 # --print-config stays torch-free
    ("cdg.gating.registry", "torch"),
    ("cdg.tracing.measure", "cdg.gating"),   # tracing reads gated convs through what they expose
    ("cdg.tracing.hw_prices", "cdg.gating"),
])
def test_import_layering(module, forbidden):
    code = (f"import sys, {module}; bad = [m for m in sys.modules if m == {forbidden!r} or m.startswith({forbidden!r} + '.')];"
            " print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
