"""Corrupted and crafted checkpoints, and damaged run directories, through every reader:
``cdg.eval --checkpoint``, ``cdg.eval --run``, ``cdg.trace --run`` and ``cdg.train --resume``.

One tiny digits run is trained once for the module (about ten seconds). A byte flip that lands
where neither torch nor the content digest looks (zip padding) must load to exactly the original
content; every other fault must be refused in one line naming the file, leaving the run directory
as it was (no metrics appended, no checkpoint or trace replaced).
"""
from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from cdg.eval import main as eval_main
from cdg.run.checkpoint import FORMAT, VERSION, load_checkpoint
from cdg.trace import main as trace_main
from cdg.train import main as train_main
from hwsim.trace.errors import UserError

from tests.cdg.helpers import tiny
from tests.faults.conftest import call, refused, snapshot

READERS = ("eval_checkpoint", "eval_run", "trace_run", "train_resume")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    train_main(tiny(root, "run", "train.epochs=2", "optim.warmup_epochs=0", "eval.linear_epochs=1",
                    "run.stop_after_epoch=1", "gate.trace_images=4", "gate.trace_act_images=2"))
    return root / "run"


@pytest.fixture(scope="module")
def original(trained):
    return load_checkpoint(trained / "checkpoints" / "last.pt")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _flip(at: float):
    def apply(data: bytes, tmp: Path) -> bytes:
        i = min(int(len(data) * at), len(data) - 1)
        return data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1:]
    return apply


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _tampered(change):
    def apply(data: bytes, tmp: Path) -> bytes:
        payload = torch.load(io.BytesIO(data), weights_only=True)
        change(payload, tmp)
        return _torch_bytes(payload)
    return apply


def _scale_first_tensor(payload, tmp):
    name = next(iter(payload["model"]))
    payload["model"][name] = payload["model"][name] * 1.001


def _zip_with(member: str, content: bytes):
    def apply(data: bytes, tmp: Path) -> bytes:
        buf = io.BytesIO(data)
        with zipfile.ZipFile(buf, "a") as archive:
            archive.writestr(member, content)
        return buf.getvalue()
    return apply


FAULTS = {
    "truncated_half": lambda d, t: d[: len(d) // 2],
    "truncated_1": lambda d, t: d[:-1],
    "truncated_to_100": lambda d, t: d[:100],
    "emptied": lambda d, t: b"",
    **{f"flip_at_{int(at * 1000)}permille": _flip(at) for at in (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999)},
    "random_bytes": lambda d, t: bytes((i * 131 + 7) % 256 for i in range(4096)),
    "text_file": lambda d, t: b"this is not a checkpoint\n",
    "json_file": lambda d, t: b'{"format": "cdg", "version": 2}\n',
    "plain_zip": lambda d, t: _plain_zip(),
    "a_tensor": lambda d, t: _torch_bytes(torch.zeros(3)),
    "a_foreign_dict": lambda d, t: _torch_bytes({"state_dict": {"w": torch.zeros(2)}}),
    "version_1": _tampered(lambda p, t: p.update(version=1)),
    "digest_removed": _tampered(lambda p, t: p.pop("sha256")),
    "digest_altered": _tampered(lambda p, t: p.update(sha256="0" * 64)),
    "epoch_altered": _tampered(lambda p, t: p.update(epoch=p["epoch"] + 1)),
    "weights_scaled": _tampered(_scale_first_tensor),
    "crafted_pickle": lambda d, t: _torch_bytes({"format": FORMAT, "version": VERSION, "model": _Evil(t / "marker")}),
    "extra_zip_member": _zip_with("archive/extra.bin", b"junk"),
}


def _plain_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("data.pkl", b"not a pickle")
    return buf.getvalue()


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _argv(reader: str, run: Path, ckpt: Path) -> tuple:
    return {"eval_checkpoint": (eval_main, ["--checkpoint", ckpt, "--no-log"]),
            "eval_run": (eval_main, ["--run", run]),
            "trace_run": (trace_main, ["--run", run]),
            "train_resume": (train_main, ["--resume", run, "train.progress=false"])}[reader]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("reader", READERS)
def test_corrupted_checkpoint(trained, original, tmp_path, capsys, reader, fault):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(FAULTS[fault](ckpt.read_bytes(), tmp_path))
    try:
        loaded = load_checkpoint(ckpt)
    except UserError:
        loaded = None
    if loaded is not None:  # the flip missed everything torch and the digest read: same content
        assert _same(loaded, original), f"{fault}: a changed checkpoint loaded with different content"
        return
    before = snapshot(run)
    main, argv = _argv(reader, run, ckpt)
    refused(call(main, argv, capsys), "last.pt")
    assert snapshot(run) == before, "a refused command changed the run directory"
    assert not (tmp_path / "marker").exists(), "code in the checkpoint ran"


RUN_DIR_FAULTS = {
    "no_config": lambda run: (run / "config.yaml").unlink(),
    "config_binary": lambda run: (run / "config.yaml").write_bytes(bytes(range(256))),
    "config_not_yaml": lambda run: (run / "config.yaml").write_text("train: {epochs: 2\n"),
    "config_bad_value": lambda run: (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace("epochs: 2", "epochs: .inf")),
    "config_duplicate_key": lambda run: (run / "config.yaml").write_text(
        (run / "config.yaml").read_text() + "train:\n  epochs: 3\n"),
    "no_checkpoint": lambda run: (run / "checkpoints" / "last.pt").unlink(),
    "checkpoint_is_a_dir": lambda run: ((run / "checkpoints" / "last.pt").unlink(),
                                        (run / "checkpoints" / "last.pt").mkdir()),
    "metrics_damaged_middle": lambda run: (run / "metrics.jsonl").write_text(
        (lambda lines: "\n".join(lines[:1] + ["{not json"] + lines[1:]) + "\n")(
            (run / "metrics.jsonl").read_text().splitlines())),
}
RUN_DIR_NEEDLES = {"no_config": "config.yaml", "config_binary": "config.yaml", "config_not_yaml": "config.yaml",
                   "config_bad_value": "epochs", "config_duplicate_key": "config.yaml", "no_checkpoint": "checkpoint",
                   "checkpoint_is_a_dir": "last.pt", "metrics_damaged_middle": "metrics.jsonl"}
RUN_DIR_READERS = {  # config.yaml and metrics.jsonl are read by a resume; eval and trace use the checkpoint's config
    fault: [r for r in READERS if r != "eval_checkpoint" and ("checkpoint" in fault or r == "train_resume")]
    for fault in RUN_DIR_FAULTS}


@pytest.mark.parametrize("fault,reader", [(f, r) for f, rs in RUN_DIR_READERS.items() for r in rs])
def test_damaged_run_directory(trained, tmp_path, capsys, fault, reader):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    RUN_DIR_FAULTS[fault](run)
    before = snapshot(run)
    main, argv = _argv(reader, run, run / "checkpoints" / "last.pt")
    refused(call(main, argv, capsys), RUN_DIR_NEEDLES[fault])
    assert snapshot(run) == before
