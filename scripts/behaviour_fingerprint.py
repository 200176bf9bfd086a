"""Fingerprint what the product computes, so a refactor can show it changed nothing.

``python scripts/behaviour_fingerprint.py --out F.json`` trains the embedded default run and a
CDG run (fixed seed, fixed thread count), and simulates on every shipped accelerator config:
the CDG run's own trace, the committed test trace ``tests/data/cdg_digits_trace`` and the
built-in dense ResNet-18 (CIFAR) table. It records SHA-256 digests of every tensor of the final
checkpoints, of the metrics and summaries without their wall-clock fields, of the trace files
and of hwsim's outputs. ``--check REF.json`` compares with a fingerprint taken before the
change and exits 1 listing every entry that differs.

Run it from the checkout under test (``cd`` into it): ``python -m`` imports the packages of the
current directory, so a second worktree of the old commit fingerprints the old code with the
same virtual environment. ``docs/behaviour-check.md`` records what the redesign's check gave.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path.cwd()
THREADS = 2
RUNS = {
    "default": [],
    "cdg": ["gate.method=cdg", "gate.target_reduction=2"],
}
# fields that are wall-clock measurements or absolute paths, not results
VOLATILE = {"img_per_s", "time_s", "elapsed_s", "wall_s", "seconds", "created", "run_dir", "path"}
COMMITTED_TRACE = Path("tests/data/cdg_digits_trace")
# checkpoint entries that differ between any two runs of the same code: Python's and numpy's global
# RNG states are never seeded by cdg (nothing draws from them), and run.dir is where the run was put
UNSEEDED = {"/rng/python", "/rng/numpy", "/config/run/dir", "/sha256"}
# (the checkpoint's content digest covers those RNG states, so it differs between runs too; the
# checkpoint format version went from 1 to 2 when the digest was added, so "/version" differs
# from a fingerprint taken before that, by design)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def strip_volatile(obj):
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    return obj


def tensor_digests(obj, prefix: str = "") -> dict[str, str]:
    """Every tensor (and scalar) in a loaded checkpoint, by its key path."""
    import torch

    out: dict[str, str] = {}
    if prefix in UNSEEDED:
        return out
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        out[prefix] = sha(str((t.dtype, tuple(t.shape))).encode() + t.view(-1).view(torch.uint8).numpy().tobytes()
                          if t.numel() else str((t.dtype, tuple(t.shape))).encode())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            out.update(tensor_digests(obj[k], f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(tensor_digests(v, f"{prefix}/{i}"))
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        out[prefix] = sha(repr(obj).encode())
    return out


def file_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def run(cmd: list[str], env: dict) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO)


def train(name: str, overrides: list[str], tmp: Path, env: dict) -> dict:
    import torch

    rd = tmp / name
    if not (rd / "summary.json").is_file():  # a kept work dir: finished runs are reused
        run([sys.executable, "-m", "cdg.train", f"run.dir={tmp}", f"run.name={name}", f"train.threads={THREADS}",
             "train.progress=false", *overrides], env)
    ckpt = torch.load(rd / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    metrics = [strip_volatile(json.loads(line)) for line in (rd / "metrics.jsonl").read_text().splitlines() if line]
    out = {
        "checkpoint": {group: sha(json.dumps(tensor_digests(value, f"/{group}"), sort_keys=True).encode())
                       for group, value in sorted(ckpt.items())},
        "metrics": sha(json.dumps(metrics, sort_keys=True).encode()),
        "summary": strip_volatile(json.loads((rd / "summary.json").read_text())),
        "trace": file_digests(rd / "trace"),
    }
    return out


def simulate(label: str, source: list[str], tmp: Path, env: dict) -> dict[str, dict]:
    out = {}
    for accel in sorted(Path(REPO / "accel_configs").glob("*.yaml")):
        dest = tmp / f"hw_{label}_{accel.stem}"
        run([sys.executable, "-m", "hwsim.run", "--accel", str(accel), *source, "--out", str(dest), "--quiet"], env)
        out[f"{label}/{accel.stem}"] = file_digests(dest)
    return out


def fingerprint(keep: Path | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="cdg-fp-") as tmp_name:
        tmp = keep.resolve() if keep is not None else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        for old in tmp.glob("hw_*"):  # simulator outputs are always recomputed
            shutil.rmtree(old)
        result = {"runs": {name: train(name, ov, tmp, env) for name, ov in RUNS.items()}, "hwsim": {}}
        result["hwsim"].update(simulate("cdg_run_trace", ["--trace", str(tmp / "cdg" / "trace")], tmp, env))
        if (REPO / COMMITTED_TRACE).is_dir():
            result["hwsim"].update(simulate("committed_trace", ["--trace", str(COMMITTED_TRACE)], tmp, env))
        result["hwsim"].update(simulate("resnet18_cifar", ["--network", "resnet18_cifar"], tmp, env))
    return result


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'new' if k not in a else 'reference'}")
            else:
                out.extend(differences(a[k], b[k], f"{path}/{k}"))
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprint here (JSON)")
    parser.add_argument("--check", type=Path, help="reference fingerprint to compare with")
    parser.add_argument("--keep", type=Path, help="work directory to keep (finished training runs in it are reused)")
    args = parser.parse_args()
    if args.check is not None and not args.check.is_file():
        print(f"error: --check: {args.check} does not exist", file=sys.stderr)
        return 2
    fp = fingerprint(args.keep)
    if args.out is not None:
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
        tmp.replace(args.out)
    if args.check is not None:
        diff = differences(json.loads(args.check.read_text()), fp)
        for line in diff:
            print(line)
        print(f"{len(diff)} differences from {args.check}")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
