"""The training loop as a library: ``Trainer(cfg, run_dir, resume).fit()`` pre-trains the SSL method,
logs to ``metrics.jsonl``, checkpoints atomically, and at the end calibrates the gates (gated runs),
writes the trace and the linear probe, and the run summary.

Under ``torchrun`` it runs data-parallel (DDP; SyncBN on CUDA); ``resume=True`` continues
bit-exactly from the last checkpoint. ``cdg.train`` is its command line.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from cdg.config import Config
from cdg import distributed
from cdg.run.builders import build_augment, build_eval_augment, build_model, load_sources, select_device
from cdg.run.checkpoint import capture_rng, load_checkpoint, load_model_state, restore_rng, save_checkpoint
from cdg.run.evaluate import features_for, knn_top1, linear_top1
from cdg.run.optim import build_optimizer, build_scheduler
from cdg.run.rundir import MetricsLog, checkpoint_path
from cdg.run.tensorboard import TensorBoardMirror
from cdg.run.train_macs import KEYS as MAC_KEYS, TrainMacMeter
from hwsim.trace.layout import METRICS_FILE, SUMMARY_FILE
from cdg.gating.calibration import calibrate
from cdg.gating.controller import GateController
from cdg.tracing.measure import trace_run
from hwsim.trace.errors import UserError
from hwsim.trace.fileio import atomic_write_json

PRICE_IMAGES = 32  # training images whose masks gate.hw_aware_prices=real prices on


def epoch_batches(num_items: int, global_batch: int, seed: int, epoch: int, rank: int, world: int) -> list[torch.Tensor]:
    """This rank's index batches for one epoch: a permutation fixed by (seed, epoch), last partial batch dropped.

    Being a pure function of (seed, epoch) is what lets a resumed run see exactly the
    batches the uninterrupted run would have seen, and every DDP rank agree on them.
    """
    mixed = seed * 1_000_003 + epoch
    if not -(2**63) <= mixed < 2**63:  # a seed beyond ~9e12 (any 64-bit seed is valid): wrap, not crash
        mixed %= 2**63
    gen = torch.Generator().manual_seed(mixed)
    perm = torch.randperm(num_items, generator=gen)
    per_rank = global_batch // world
    steps = num_items // global_batch
    return [perm[s * global_batch + rank * per_rank : s * global_batch + (rank + 1) * per_rank] for s in range(steps)]


class Trainer:
    """One pre-training job on this process's DDP rank (all ranks compute, rank 0 writes).

    ``__init__`` builds data, model, gates, optimiser and schedule from the resolved ``cfg`` (and
    restores the last checkpoint of ``run_dir`` when ``resume``); ``fit`` trains to the end (or to
    ``run.stop_after_epoch``) and returns the summary on rank 0.
    """

    def __init__(self, cfg: Config, run_dir: Path, resume: bool):
        self.cfg = cfg
        self.run_dir = run_dir
        device_type = "cuda" if select_device(cfg).type == "cuda" else "cpu"
        self.dist = distributed.init_from_env(device_type)
        self.device = select_device(cfg, self.dist.local_rank)
        self.is_main = self.dist.is_main
        if cfg.train.batch_size % self.dist.world_size:
            raise UserError(
                f"train.batch_size={cfg.train.batch_size} is not divisible by the {self.dist.world_size} DDP ranks"
            )
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.cuda = self.device.type == "cuda"
        self.amp = self.cuda and cfg.train.amp
        self.channels_last = self.cuda and cfg.train.channels_last
        mirror = TensorBoardMirror(run_dir) if cfg.train.tensorboard and self.is_main else None
        self.metrics = MetricsLog(run_dir / METRICS_FILE, enabled=self.is_main, mirror=mirror)

        self.sources = load_sources(cfg)
        if len(self.sources.train) < cfg.train.batch_size:
            raise UserError(
                f"train.batch_size={cfg.train.batch_size} is larger than the {len(self.sources.train)} training images"
            )
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.model = build_model(cfg)
        if self.dist.enabled and self.cuda and cfg.train.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.augment = build_augment(cfg, self.sources.train.mean, self.sources.train.std).to(self.device)
        self.steps_per_epoch = len(self.sources.train) // cfg.train.batch_size
        price_images = None
        if cfg.gate.method != "none" and cfg.gate.hw_aware and cfg.gate.hw_aware_prices == "real":
            price_images = self._train_images(PRICE_IMAGES)  # the initial network's own masks (docs/hw-aware.md)
        self.gates = (GateController(cfg, self.model, self.steps_per_epoch, price_images)
                      if cfg.gate.method != "none" else None)
        if self.gates is not None and self.gates.hw_layers and self.is_main:
            # the per-layer hardware prices the regulariser uses (same on every start: derived from shapes,
            # or under hw_aware_prices=real from the seeded initial weights and fixed training images)
            atomic_write_json(run_dir / "hw_aware.json", {"accel": cfg.gate.hw_aware, "layers": self.gates.hw_layers})
        # forward MACs of every training step (both branches, target encoder included), see train_macs.py
        self.macs = TrainMacMeter(self.model, cfg.data.image_size)
        self.macs_total = {"steps": 0, **dict.fromkeys(MAC_KEYS, 0.0)}
        self.macs_window = dict.fromkeys(MAC_KEYS, 0.0)
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.optimizer = build_optimizer(self.model, cfg.optim, cfg.train.batch_size)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.steps_per_epoch, cfg.train.epochs)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        # Augmentation randomness differs per rank, and is part of the checkpointed RNG state.
        torch.manual_seed(cfg.train.seed + 100_003 * (self.dist.rank + 1))
        if resume:
            self._restore(checkpoint_path(run_dir))

        step_module: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.cuda else None
            step_module = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.step_module = torch.compile(step_module) if cfg.train.compile else step_module

    # ------------------------------------------------------------------ checkpoints
    def _restore(self, path: Path) -> None:
        payload = load_checkpoint(path, require=("optimizer", "scheduler", "step_in_epoch", "rng"))
        load_model_state(self.model, payload["model"], path)
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
        except (KeyError, ValueError) as exc:
            raise UserError(f"checkpoint {path}: optimizer state does not match this run ({exc})") from None
        if self.gates is not None:
            if "gate_controller" not in payload:
                raise UserError(f"checkpoint {path}: field 'gate_controller' is missing (was it trained without gates?)")
            self.gates.load_state_dict(payload["gate_controller"])
        if "train_macs" in payload:  # older checkpoints have none: the totals then start at the resume
            self.macs_total = {key: payload["train_macs"][key] for key in self.macs_total}
        self.epoch, self.step_in_epoch = payload["epoch"], payload["step_in_epoch"]
        self.global_step = payload["global_step"]
        rng = payload["rng"]
        saved_world = len(rng) if isinstance(rng, list) else 1
        if saved_world == self.dist.world_size:
            restore_rng(rng[self.dist.rank] if isinstance(rng, list) else rng)
        elif self.is_main:
            print(
                f"warning: {path} was written by {saved_world} rank(s), this run has {self.dist.world_size}: "
                "data order is kept but augmentation randomness restarts, so the result will not be bit-identical",
                file=sys.stderr,
            )
        dropped = self.metrics.truncate_after(self.global_step)
        if self.is_main:
            note = f", dropped {dropped} metric record(s) logged after it" if dropped else ""
            print(f"resumed {self.run_dir} at epoch {self.epoch} step {self.global_step}{note}", file=sys.stderr)

    def _save_local(self) -> None:
        """Rank-0 checkpoint of the final (calibrated) weights; other ranks' RNG state is unchanged."""
        payload = load_checkpoint(checkpoint_path(self.run_dir))
        payload["model"] = self.model.state_dict()
        payload.pop("format"), payload.pop("version")
        save_checkpoint(checkpoint_path(self.run_dir), payload)

    def _save(self) -> None:
        # Every rank has its own augmentation RNG stream; rank 0 stores all of them.
        rng = capture_rng()
        if self.dist.enabled:
            gathered: list = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng = gathered
        if self.is_main:
            save_checkpoint(
                checkpoint_path(self.run_dir),
                {
                    "config": self.cfg.model_dump(mode="json"),
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "epoch": self.epoch,
                    "step_in_epoch": self.step_in_epoch,
                    "global_step": self.global_step,
                    "world_size": self.dist.world_size,
                    "rng": rng,
                    **({"gate_controller": self.gates.state_dict()} if self.gates is not None else {}),
                    "train_macs": dict(self.macs_total),
                },
            )
        distributed.barrier()

    # ------------------------------------------------------------------ training
    def _train_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        images = images.to(self.device, non_blocking=True)
        with torch.no_grad():
            view1, view2 = self.augment(images)
        if self.channels_last:
            view1 = view1.contiguous(memory_format=torch.channels_last)
            view2 = view2.contiguous(memory_format=torch.channels_last)
        epoch = self.epoch + self.step_in_epoch / self.steps_per_epoch
        if self.gates is not None:
            self.gates.begin_step(epoch, getattr(self.augment, "last_geometry", None))
        self.macs.begin_step()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.step_module(view1, view2)
        step_macs = self.macs.end_step()
        self.macs_total["steps"] += 1
        for key, value in step_macs.items():
            self.macs_total[key] += value
            self.macs_window[key] += value
        loss, logs = out.loss, dict(out.logs)
        if self.gates is not None:
            gate_loss, gate_logs = self.gates.loss(epoch)
            self.gates.end_step()
            logs.update(gate_logs)
            if gate_loss is not None:
                loss = loss + gate_loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {self.global_step}: lower optim.lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        if self.gates is not None:
            self.gates.after_step()
        self.scheduler.step()
        self.global_step += 1
        self.model.momentum_update(self.global_step / self.total_steps)
        return out.loss.detach(), logs

    def _run_epoch(self) -> None:
        cfg = self.cfg
        batches = epoch_batches(
            len(self.sources.train), cfg.train.batch_size, cfg.train.seed, self.epoch, self.dist.rank, self.dist.world_size
        )[self.step_in_epoch :]
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.train.epochs}",
            disable=not (self.is_main and cfg.train.progress),
            dynamic_ncols=True,
            leave=False,
        )
        self.model.train()
        window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        self.macs_window = dict.fromkeys(MAC_KEYS, 0.0)
        for images, _ in self.sources.train.iter_batches(
            batches, num_workers=cfg.data.num_workers, pin_memory=self.cuda
        ):
            loss, logs = self._train_step(images)
            self.step_in_epoch += 1
            window_loss += loss.item()
            window_steps += 1
            if window_steps == cfg.train.log_every_steps or self.step_in_epoch == self.steps_per_epoch:
                elapsed = time.perf_counter() - window_start
                mean_loss = distributed.all_reduce_mean(torch.tensor(window_loss / window_steps)).item()
                record = {
                    "event": "train",
                    "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                    "step": self.global_step,
                    "loss": mean_loss,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "img_per_s": window_steps * cfg.train.batch_size / elapsed,
                    **self._window_macs(window_steps),
                    **logs,
                }
                self.metrics.write(record)
                bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{record['lr']:.3g}", img_s=f"{record['img_per_s']:.0f}")
                window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            bar.update(1)
            every = cfg.run.checkpoint_every_steps
            if every and self.global_step % every == 0 and self.step_in_epoch < self.steps_per_epoch:
                self._save()
        bar.close()

    def _knn(self) -> float | None:
        """kNN monitor on rank 0 (other ranks wait); uses no randomness, so resume stays exact."""
        top1 = None
        if self.is_main:
            train, test = features_for(self.cfg, self.model.backbone, self.sources, self.device)
            top1 = knn_top1(self.cfg, train, test, self.sources.train.num_classes)
            self.metrics.write({"event": "knn", "epoch": self.epoch, "step": self.global_step, "top1": top1})
        distributed.barrier()
        return top1

    def fit(self) -> dict | None:
        cfg = self.cfg
        if self.is_main and self.epoch == 0 and self.global_step == 0:
            print(
                f"training {cfg.method.name} / {cfg.model.arch} x{cfg.model.width} on {cfg.data.dataset} "
                f"({len(self.sources.train)} images, {self.steps_per_epoch} steps/epoch, {cfg.train.epochs} epochs) "
                f"on {self.device}{f' x{self.dist.world_size} ranks' if self.dist.enabled else ''} -> {self.run_dir}",
                file=sys.stderr,
            )
        while self.epoch < cfg.train.epochs:
            start = time.perf_counter()
            self._run_epoch()
            self.epoch += 1
            self.step_in_epoch = 0
            self.metrics.write(
                {"event": "epoch", "epoch": self.epoch, "step": self.global_step, "time_s": time.perf_counter() - start}
            )
            every = cfg.eval.knn_every_epochs
            if (every and self.epoch % every == 0) or self.epoch == cfg.train.epochs:
                top1 = self._knn()
                if self.is_main and cfg.train.progress:
                    tqdm.write(f"epoch {self.epoch}: kNN top-1 {top1:.4f}", file=sys.stderr)
            self._save()
            if cfg.run.stop_after_epoch == self.epoch and self.epoch < cfg.train.epochs:
                if self.is_main:
                    print(f"stopped after epoch {self.epoch} (run.stop_after_epoch); continue with --resume", file=sys.stderr)
                return None
        return self._finish()

    def _window_macs(self, steps: int) -> dict[str, float]:
        """Per-step forward MACs of the log window, summed over DDP ranks; resets the window."""
        window = torch.tensor([self.macs_window[key] for key in MAC_KEYS], dtype=torch.float64)
        window = distributed.all_reduce_mean(window) * self.dist.world_size / steps
        self.macs_window = dict.fromkeys(MAC_KEYS, 0.0)
        return {f"train_macs_{key}": float(v) for key, v in zip(MAC_KEYS, window) if key != "dense"}

    def _macs_summary(self) -> dict[str, float]:
        """Training forward MACs of the whole run (all ranks): totals and means per step."""
        totals = torch.tensor([self.macs_total[key] for key in MAC_KEYS], dtype=torch.float64)
        totals = distributed.all_reduce_mean(totals) * self.dist.world_size
        steps = max(self.macs_total["steps"], 1)
        summary = {}
        for key, total in zip(MAC_KEYS, totals.tolist()):
            summary[f"train_macs_{key}_total"] = total
            summary[f"train_macs_{key}_per_step"] = total / steps
        return summary

    def _train_images(self, count: int) -> torch.Tensor:
        """The first ``count`` training images under the evaluation transform (deterministic)."""
        count = min(count, len(self.sources.train))
        transform = build_eval_augment(self.cfg, self.sources.train.mean, self.sources.train.std).to(self.device)
        images, _ = next(self.sources.train.iter_batches([torch.arange(count)]))
        return transform(images.to(self.device))

    def _calibrate(self) -> dict:
        """Shift all gates so the measured ratio on held-out training images meets the target."""
        cfg = self.cfg
        count = min(1024, len(self.sources.train))
        images = self._train_images(count)
        result = calibrate(self.model.backbone, images, self.gates.infos, cfg.gate.target_ratio,
                           full=cfg.gate.accounting == "full")
        record = {"event": "calibration", "epoch": self.epoch, "step": self.global_step, "images": count,
                  "shift": result.shift, "held_shifts": result.held, "ratio_before": result.ratio_before,
                  "ratio_after": result.ratio_after, "target_ratio": cfg.gate.target_ratio,
                  "accounting": cfg.gate.accounting}
        self.metrics.write(record)
        return record

    def _finish(self) -> dict | None:
        """Calibration and trace (gated runs), linear probe on frozen features (rank 0) and the run summary."""
        summary = None
        train_macs = self._macs_summary()  # every rank takes part in the reduction
        if self.is_main:
            summary = {"epochs": self.epoch, "steps": self.global_step}
            cfg = self.cfg
            if self.gates is not None and cfg.gate.calibrate and cfg.gate.target_ratio is not None and self.gates.calibratable:
                calibration = self._calibrate()
                summary["calibration_shift"] = calibration["shift"]
                self._save_local()
            if cfg.gate.method != "none" or cfg.gate.trace_images > 0:
                report = trace_run(cfg, self.model.backbone, self.sources, self.device, self.run_dir,
                                   progress=cfg.train.progress)
                self.metrics.write({"event": "computation", "epoch": self.epoch, "step": self.global_step, **report})
                summary.update(dense_macs=report["dense_macs"], effective_macs=report["effective_macs"],
                               reduction=report["reduction"], effective_macs_full=report["effective_macs_full"],
                               reduction_full=report["reduction_full"], accounting=cfg.gate.accounting,
                               per_image_mac_ratio=report["per_image_mac_ratio"])
                if cfg.gate.target_ratio is not None:
                    summary["target_reduction"] = 1 / cfg.gate.target_ratio
                summary["control"] = cfg.gate.control  # what drove the method to its budget (docs/algorithm.md)
            summary.update(train_macs)
            # Final accuracy of the final (calibrated) weights, from one feature pass.
            train, test = features_for(cfg, self.model.backbone, self.sources, self.device)
            summary["knn_top1"] = knn_top1(cfg, train, test, self.sources.train.num_classes)
            if cfg.eval.linear_epochs > 0:
                probe = linear_top1(cfg, train, test, self.sources.train.num_classes)
                self.metrics.write({"event": "linear_probe", "epoch": self.epoch, "step": self.global_step, **probe})
                summary.update(linear_top1=probe["top1"], linear_top5=probe["top5"])
            atomic_write_json(self.run_dir / SUMMARY_FILE, summary)
            print(
                "done: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in summary.items() if not isinstance(v, dict)),
                file=sys.stderr,
            )
        distributed.barrier()
        return summary
