"""End-to-end training on tiny digits runs: run directory, exact resume, bad input, eval, DDP."""
import json

import pytest
import torch

from cdg.run import trainer as trainer_mod
from cdg.run.trainer import epoch_batches
from cdg.train import main

from tests.cdg.helpers import final_state, records, run_cli, tiny

def test_epoch_batches_are_a_fixed_sharded_permutation():
    a = epoch_batches(100, 20, seed=3, epoch=1, rank=0, world=1)
    assert len(a) == 5 and all(len(b) == 20 for b in a)
    assert torch.equal(torch.cat(a).sort().values, torch.arange(100))
    assert all(torch.equal(x, y) for x, y in zip(a, epoch_batches(100, 20, 3, 1, 0, 1)))
    assert not torch.equal(a[0], epoch_batches(100, 20, 3, 2, 0, 1)[0])
    r0, r1 = epoch_batches(100, 20, 3, 1, 0, 2), epoch_batches(100, 20, 3, 1, 1, 2)
    assert all(torch.equal(torch.cat([x, y]), z) for x, y, z in zip(r0, r1, a))


def test_epoch_batches_take_every_64_bit_seed():
    """Seeds beyond ~9e12 (valid: any 64-bit integer) overflowed torch's seed and crashed the first
    epoch; they now wrap, and every seed that worked before keeps its permutation."""
    for seed in (2**63 - 1, -(2**63), 10**13, -(10**13)):
        batches = epoch_batches(100, 20, seed=seed, epoch=3, rank=0, world=1)
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(100))
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 1)
    assert torch.equal(epoch_batches(100, 20, 3, 1, 0, 1)[0], torch.randperm(100, generator=gen)[:20])


def test_default_style_run_writes_the_run_directory(tmp_path):
    summary = main(tiny(tmp_path, "run"))
    run_dir = tmp_path / "run"
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    events = {r["event"] for r in records(run_dir)}
    assert {"train", "epoch", "knn", "linear_probe"} <= events
    train_records = records(run_dir, "train")
    assert all(k in train_records[0] for k in ("loss", "lr", "img_per_s", "step", "epoch"))
    assert 0.0 <= summary["linear_top1"] <= 1.0 and summary["epochs"] == 2
    assert not list(run_dir.rglob("*.tmp"))
    with pytest.raises(SystemExit) as exc:  # a second start must not clobber the run
        main(tiny(tmp_path, "run"))
    assert exc.value.code == 2


@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "simsiam"])
def test_resume_after_an_epoch_is_bit_identical(tmp_path, method):
    whole = tiny(tmp_path, "whole", f"method.name={method}")
    split = tiny(tmp_path, "split", f"method.name={method}", "run.stop_after_epoch=1")
    main(whole)
    assert main(split) is None  # stopped after epoch 1
    main(["--resume", str(tmp_path / "split"), "train.progress=false"])
    a, b = final_state(tmp_path / "whole"), final_state(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = lambda d: [r["loss"] for r in records(d, "train")]  # noqa: E731
    assert losses(tmp_path / "whole") == losses(tmp_path / "split")


def test_resume_mid_epoch_after_a_crash_is_bit_identical(tmp_path, monkeypatch):
    main(tiny(tmp_path, "whole", "train.epochs=2", "run.checkpoint_every_steps=4"))
    original = trainer_mod.Trainer._train_step
    calls = {"n": 0}

    def crashing(self, images):
        calls["n"] += 1
        if calls["n"] == 7:  # after the step-4 checkpoint, before the end of epoch 1 (10 steps)
            raise RuntimeError("simulated crash")
        return original(self, images)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(tiny(tmp_path, "crash", "train.epochs=2", "run.checkpoint_every_steps=4"))
    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", original)
    assert torch.load(tmp_path / "crash" / "checkpoints" / "last.pt", weights_only=False)["global_step"] == 4
    main(["--resume", str(tmp_path / "crash")])
    a, b = final_state(tmp_path / "whole"), final_state(tmp_path / "crash")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in records(tmp_path / "crash", "train")]
    assert steps == sorted(set(steps))  # no duplicated records from the crashed attempt


def test_eval_entry_point_on_a_checkpoint(tmp_path):
    from cdg.eval import main as eval_main

    main(tiny(tmp_path, "run", "train.epochs=2"))
    trained = eval_main(["--run", str(tmp_path / "run")])
    random = eval_main(["--run", str(tmp_path / "run"), "--random-init", "--no-log"])
    assert trained["weights"] == "trained" and random["weights"] == "random-init"
    assert 0 <= trained["linear_top1"] <= 1
    assert [r["weights"] for r in records(tmp_path / "run", "eval")] == ["trained"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.epochs=abc"], "train.epochs"),
        (["data.dataset=mnist"], "data.dataset"),
        (["method.name=swav"], "method.name"),
        (["optim.lrr=1"], "optim.lrr"),
        (["data.dataset=cifar10", "data.data_dir=/nonexistent/cifar"], "/nonexistent/cifar"),
        (["--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
        (["--resume", "/nonexistent/run"], "/nonexistent/run"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    result = run_cli("-m", "cdg.train", *args, f"run.dir={tmp_path}" if "--resume" not in args else "train.seed=0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in lines[0] and lines[0].startswith("error: ")


def test_resume_with_changed_config_and_corrupt_checkpoint(tmp_path):
    main(tiny(tmp_path, "run", "train.epochs=2", "run.stop_after_epoch=1"))
    result = run_cli("-m", "cdg.train", "--resume", str(tmp_path / "run"), "optim.lr=0.123")
    assert result.returncode == 2 and "optim.lr differs" in result.stderr
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    for cmd in (["-m", "cdg.train", "--resume", str(tmp_path / "run")], ["-m", "cdg.eval", "--run", str(tmp_path / "run")]):
        result = run_cli(*cmd)
        assert result.returncode == 2 and "unreadable" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "run" / "config.yaml").is_file()  # the failed attempts removed nothing


def test_ddp_two_gloo_processes(tmp_path):
    result = run_cli(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cdg.train",
        *tiny(tmp_path, "ddp", "train.epochs=2", "eval.linear_epochs=1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "ddp"
    payload = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert payload["world_size"] == 2 and len(payload["rng"]) == 2
    train_records = records(run_dir, "train")
    steps = [r["step"] for r in train_records]
    assert steps == sorted(set(steps)), "only rank 0 logs"
    assert len(records(run_dir, "linear_probe")) == 1
