"""What the calibration knows about the host (CPU model, cores, SIMD width, caches) and the
``accel_configs/cpu_host.yaml`` text it writes: the fitted figures, their provenance in fields
(``host``) and comments (fit quality, load note)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import yaml

CPU_FLAGS_SIMD = (("avx512f", 32), ("avx2", 16), ("avx", 8))   # FP32 FMAs per core cycle: 2 FMA ports x lanes

# torch calls of the executor's paths beyond the priced ones: top-level calls counted with
# torch.profiler on one forward of a synthetic ResNet-18 layer (layer1.0.conv2, 64 px, block2 and
# channel16_block2 gates) of the sparse executor, minus the calls the model prices: decide =
# the decision (synthetic fixed masks: 5), spatial = the active-pixel list (always), gather =
# patch and scatter index arithmetic (when a pixel is on), union = the per-block "any" and mask,
# per channel block = its rows, weight slice, indices; dense masked = mask upsampling and views;
# tile conv = tile index arithmetic, views and the edge crop (69 calls in all).
# channel_union / per_image (channel gates) were not profiled: estimates.
OP_COUNTS = {"decide": 5, "spatial": 11, "gather": 28, "union": 7, "per_channel_block": 11, "dense_masked": 9,
             "tile_conv": 45, "channel_union": 6, "per_image": 4}

# energy assumptions (no measurement: this host has no power counters the calibration reads)
ENERGY = {
    "source": "assumptions: Horowitz, ISSCC 2014 (45 nm): FP32 multiply 3.7 pJ + add 0.9 pJ; DRAM "
              "1.3-2.6 nJ per 64-bit access (~20 pJ/bit taken); static package power a round figure",
    "process_nm": 45, "mac_pj": 4.6, "dram_pj_per_byte": 160.0, "static_w": 20.0,
}


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


LLC_CAP_KB = 32 * 1024    # a VM or a shared socket reports the whole level 3; one job counts on this much at most


def _cache_kb(want: str = "2", default: float = 1024.0) -> float:
    """cpu0's cache of level ``want`` (sysfs; level 2 is private to the core, so its size is what
    one op can rely on on a shared host), ``default`` where it cannot be read."""
    sizes = []
    for p in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        level = p.parent / "level"
        if not level.exists() or level.read_text().strip() != want:
            continue
        try:
            text = p.read_text().strip().upper()
        except OSError:
            continue
        mult = 1024 if text.endswith("M") else 1
        digits = text.rstrip("KMB")
        if digits.isdigit():
            sizes.append(int(digits) * mult)
    return float(max(sizes)) if sizes else default


def host_facts() -> dict:
    info = _cpuinfo()
    logical = os.cpu_count() or 1
    flags = info.get("flags", "").split()
    simd = next((lanes for flag, lanes in CPU_FLAGS_SIMD if flag in flags), 4)
    cores = int(info.get("cpu cores", logical)) if info.get("cpu cores", "").isdigit() else logical
    mhz = float(info["cpu MHz"]) if info.get("cpu MHz", "").replace(".", "", 1).isdigit() else 2000.0
    return {"cpu_model": info.get("model name", platform.processor() or "unknown"), "logical_cpus": logical,
            "cores": min(cores, logical), "simd": simd, "mhz": round(mhz, 1), "cache_kb": _cache_kb(),
            "llc_kb": min(max(_cache_kb("3", 0.0), 4 * _cache_kb()), LLC_CAP_KB)}


def config_text(name: str, facts: dict, fitted: dict, meta: dict, quality: dict) -> str:
    """The YAML: a comment header (command, load, fit quality), then the fields."""
    data = {
        "name": name, "model": "cpu", "clock_mhz": facts["mhz"],
        "word_bytes": {"ifmap": 4, "filter": 4, "ofmap": 4},
        "host": {"cpu_model": facts["cpu_model"], "logical_cpus": facts["logical_cpus"],
                 "torch_version": meta["torch_version"], "date": meta["date"], "note": meta["note"]},
        "cores": facts["cores"], "calibrated_threads": meta["threads"], "threads": meta["threads"],
        "simd_fmas_per_core_cycle": facts["simd"], "batch": meta["batch"],
        **fitted, "ops": dict(OP_COUNTS), "channels_last": False, "path": "auto", "max_block_loop": 64, "energy": dict(ENERGY),
    }
    lines = [f"# The host CPU running torch FP32 (model: cpu), calibrated by micro-benchmarks:",
             f"#   {meta['command']}",
             f"# {meta['date']}, torch {meta['torch_version']}, {meta['threads']} threads, {meta['seconds']:.0f} s.",
             "# Fit on its own points, |predicted/measured - 1| median / max:"]
    lines += [f"#   {k}: {v['median']:.3f} / {v['max']:.3f} on the {v['points']} points fitted (in cache, above"
              " the call cost)" for k, v in quality.items()]
    lines += ["# Fields and equations: docs/hwsim-cpu.md. Never fitted on whole networks.", ""]
    return "\n".join(lines) + yaml.safe_dump(data, sort_keys=False, width=100)
