"""The one checkpoint reader: a crafted pickle never runs, a flipped byte is caught, every
reader (``cdg.eval --checkpoint``, ``cdg.train --resume``, ``cdg.trace``, ``load_trained``) goes
through it. Bit-exact resume itself is checked by ``tests/cdg/test_train.py``."""
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cdg.run.builders import load_trained
from cdg.run.checkpoint import FORMAT, VERSION, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from cdg.train import main as train_main
from hwsim.trace.errors import UserError

from tests.cdg.helpers import run_cli, tiny


class _Evil:
    """Pickles as a call of ``exec`` that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    train_main(tiny(root, "run", "train.epochs=1", "optim.warmup_epochs=0", "eval.linear_epochs=1"))
    return root / "run"


def _one_line_error(result, needle):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]


def _tensor_entry_offset(path: Path) -> int:
    """File offset of the middle byte of the largest stored tensor in a torch zip archive."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = path.read_bytes()
    start = info.header_offset
    name_len = int.from_bytes(raw[start + 26:start + 28], "little")
    extra_len = int.from_bytes(raw[start + 28:start + 30], "little")
    return start + 30 + name_len + extra_len + info.file_size // 2


def test_crafted_pickle_is_refused_and_never_runs(tmp_path, trained):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "model": _Evil(marker)}, evil)
    with pytest.raises(UserError, match="refused.*names exec"):
        load_checkpoint(evil)
    with pytest.raises(UserError, match="refused"):
        load_trained(evil)
    _one_line_error(run_cli("-m", "cdg.eval", "--checkpoint", str(evil)), "refused")
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shutil.copy(evil, run / "checkpoints" / "last.pt")
    _one_line_error(run_cli("-m", "cdg.train", "--resume", str(run)), "refused")
    _one_line_error(run_cli("-m", "cdg.trace", "--run", str(run)), "refused")
    assert not marker.exists()


def test_bit_flip_in_tensor_storage_is_detected(tmp_path, trained):
    good = trained / "checkpoints" / "last.pt"
    load_checkpoint(good)  # the untouched file verifies
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpt = run / "checkpoints" / "last.pt"
    raw = bytearray(ckpt.read_bytes())
    raw[_tensor_entry_offset(ckpt)] ^= 0x10
    ckpt.write_bytes(bytes(raw))
    assert torch.load(ckpt, weights_only=True)["format"] == FORMAT  # torch alone does not notice
    with pytest.raises(UserError, match="corrupted"):
        load_checkpoint(ckpt)
    _one_line_error(run_cli("-m", "cdg.eval", "--checkpoint", str(ckpt)), "corrupted")
    _one_line_error(run_cli("-m", "cdg.train", "--resume", str(run)), "corrupted")


def test_tampered_scalar_and_digest_are_detected(tmp_path, trained):
    payload = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    payload["global_step"] += 1  # content changed, digest kept
    torch.save(payload, tmp_path / "a.pt")
    with pytest.raises(UserError, match="corrupted"):
        load_checkpoint(tmp_path / "a.pt")
    payload.pop("sha256")
    torch.save(payload, tmp_path / "b.pt")
    with pytest.raises(UserError, match="corrupted"):
        load_checkpoint(tmp_path / "b.pt")


def test_old_checkpoints_are_refused_with_a_clear_message(tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "version": 1, "model": {}, "rng": {"numpy": np.random.get_state()}}, old)
    with pytest.raises(UserError, match="older cdg"):
        load_checkpoint(old)
    torch.save({"format": FORMAT, "version": 1, "model": {}, "config": {}, "epoch": 0, "global_step": 0}, old)
    with pytest.raises(UserError, match="older cdg"):
        load_checkpoint(old)


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    random.seed(5), np.random.seed(6), torch.manual_seed(7)
    random.random(), np.random.standard_normal()  # a cached Gaussian is part of numpy's state
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}, "epoch": 0, "global_step": 0, "rng": capture_rng()})
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
