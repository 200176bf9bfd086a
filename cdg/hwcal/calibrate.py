"""One calibration: set the thread count, run the micro-benchmarks, fit, return the YAML text."""
from __future__ import annotations

import datetime as dt
import time

import torch

from cdg.hwcal import fit, micro
from cdg.hwcal.host_yaml import config_text, host_facts
from hwsim.trace.errors import UserError


def calibrate(threads: int, batch: int = 1, name: str = "cpu_host", quick: bool = False,
              note: str = "", command: str = "python -m cdg.calibrate_cpu") -> tuple[str, dict]:
    """-> (YAML text, fitted figures). ``quick``: a few shapes with short budgets (tests)."""
    for fld, val in (("--threads", threads), ("--batch", batch)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise UserError(f"{fld}: expected a positive integer, got {val!r}")
    facts = host_facts()
    if threads > facts["logical_cpus"]:
        raise UserError(f"--threads: {threads} exceeds the host's {facts['logical_cpus']} logical CPUs")
    plan = micro.Plan.quick() if quick else micro.Plan()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        op_us = micro.op_overhead(plan)
        gemm_pts, conv_pts = micro.gemm_points(plan), micro.conv_points(plan)
        gather_pts, scatter_pts = micro.gather_points(plan), micro.scatter_points(plan)
        scatter_cl_pts = micro.scatter_cl_points(plan)
        cache_bytes = facts["cache_kb"] * 1024
        llc_bytes = facts["llc_kb"] * 1024
        cache_gb_s = micro.copy_point(int(cache_bytes / 4), plan)        # source + copy fit in the cache
        llc_gb_s = micro.copy_point(int(llc_bytes / 4), plan)
        dram_gb_s = micro.copy_point(int(max(2 * llc_bytes, plan.dram_bytes)), plan)
    finally:
        torch.set_num_threads(previous)
    gemm_bytes = [4 * (m * k + k * n + m * n) for (m, n, k), _ in gemm_pts]
    conv_bytes = [b + 4 * (n * k + m * n) for (m, n, k, b), _ in conv_pts]
    copy_bytes = [2 * rows * row for (rows, row), _ in gather_pts]
    used = {"conv": fit.usable(conv_pts, op_us, conv_bytes, cache_bytes),
            "gemm": fit.usable(gemm_pts, op_us, gemm_bytes, cache_bytes),
            "gather": fit.usable(gather_pts, op_us, copy_bytes, cache_bytes),
            "scatter": fit.usable(scatter_pts, op_us, copy_bytes, cache_bytes),
            "scatter_channels_last": fit.usable(scatter_cl_pts, op_us, copy_bytes, cache_bytes)}
    fitted = {"op_us": round(float(op_us), 4),
              **{k: fit.fit_throughput(used[k], op_us) for k in ("conv", "gemm")},
              **{k: fit.fit_rowcopy(used[k], op_us) for k in ("gather", "scatter", "scatter_channels_last")},
              "memory": {"cache_kb": facts["cache_kb"],
                         "cache_gb_s": round(float(max(cache_gb_s, llc_gb_s, dram_gb_s)), 3),
                         "llc_kb": facts["llc_kb"], "llc_gb_s": round(float(max(llc_gb_s, dram_gb_s)), 3),
                         "dram_gb_s": round(float(dram_gb_s), 3)}}
    for kind, pts in (("gather", gather_pts), ("scatter", scatter_pts), ("scatter_channels_last", scatter_cl_pts)):
        fitted[kind]["far_gb_s"] = fit.fit_far(pts, op_us, fitted[kind], cache_bytes, fitted["memory"]["dram_gb_s"])
    predict = {"conv": fit.predict_throughput, "gemm": fit.predict_throughput, "gather": fit.predict_rowcopy,
               "scatter": fit.predict_rowcopy, "scatter_channels_last": fit.predict_rowcopy}
    quality = {k: {**fit.relative_errors([predict[k](fitted[k], s, op_us) for s, _ in pts], [t for _, t in pts]),
                   "points": f"{len(pts)} of {len(every)}"}
               for (k, pts), every in zip(used.items(), (conv_pts, gemm_pts, gather_pts, scatter_pts, scatter_cl_pts))}
    meta = {"threads": threads, "batch": batch, "torch_version": str(torch.__version__),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "note": note,
            "seconds": time.perf_counter() - start, "command": command}
    return config_text(name, facts, fitted, meta, quality), fitted
