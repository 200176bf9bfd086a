"""Fixtures shared by the tests of cdg.gating."""
import pytest

from cdg.gating.native import loader


@pytest.fixture(params=["native", "torch"])
def gate_backend(request, monkeypatch):
    """Runs a test with CDG's fused CPU kernel (``cdg.gating.native``) and with the eager torch path."""
    if request.param == "torch":
        monkeypatch.setenv(loader.ENV_SWITCH, "0")
    else:
        monkeypatch.delenv(loader.ENV_SWITCH, raising=False)
        if loader.library() is None:
            pytest.skip("the fused CPU gate kernel cannot be built here (test_native_gate checks where it must)")
    return request.param
