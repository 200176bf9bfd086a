"""Fast feedback and a light install: every CLI checks its arguments before torch is imported, and
hwsim and analysis run with torch (and the training extra) absent."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# an import hook that makes the training extra look uninstalled
BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "torchvision", "kornia", "sklearn"}:
                raise ImportError(f"{name} is blocked (light-install test)")
    sys.meta_path.insert(0, Block())
""")


def run(code: str, cwd=REPO):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("module, argv", [
    ("cdg.train", ["train.epochs=abc"]),
    ("cdg.train", ["--nonsense"]),
    ("cdg.eval", ["--config", "configs/digits_simclr.yaml"]),
    ("cdg.eval", ["--config", "configs/digits_simclr.yaml", "--random-init", "optim.lr=-1"]),
    ("cdg.trace", ["--model", "torchvision:resnet18"]),
    ("cdg.trace", ["--run", "runs/x", "--out", "y"]),
])
def test_bad_arguments_are_reported_before_torch_is_imported(module, argv):
    code = BLOCK + textwrap.dedent(f"""
        import importlib
        cli = importlib.import_module({module!r})
        try:
            cli.main({argv!r})
        except SystemExit as exc:
            print("exit", exc.code)
    """)
    done = run(code)
    assert "exit 2" in done.stdout, done.stderr[-2000:]
    assert "blocked" not in done.stderr and done.stderr.strip().startswith("error:")


def test_hwsim_and_analysis_run_without_torch(tmp_path):
    trace = REPO / "tests" / "data" / "cdg_digits_trace"
    code = BLOCK + textwrap.dedent(f"""
        from hwsim import run
        assert run.main(["--accel", "accel_configs/systolic_32x32_os.yaml", "--trace", {str(trace)!r}, "--quiet"]) == 0
        assert run.main(["--accel", "accel_configs/gpu_a100.yaml", "--network", "resnet18_cifar", "--quiet"]) == 0
        import analysis.dse, analysis.pareto, analysis.dashboard
    """)
    done = run(code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_base_install_has_no_training_dependency():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert not base & {"torch", "torchvision", "kornia", "scikit-learn", "ninja"}
    extras = project["optional-dependencies"]
    train = {d.split(">")[0].split("=")[0].strip() for d in extras["train"]}
    assert {"torch", "torchvision", "kornia", "scikit-learn"} <= train
    assert any("train" in d and "cdg-hwsim[" in d for d in extras["dev"])
