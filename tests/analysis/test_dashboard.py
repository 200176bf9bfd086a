"""python -m analysis.dashboard: a hand-built sweep directory (points.csv, layers.csv, sweep.json and
run directories with metrics.jsonl) -> one self-contained HTML file, checked as text, as figures,
and in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from analysis import dashboard
from analysis.dashboard import FIGURES
from analysis.results import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]

# run -> (gate_method, S, b, G, target, linear_top1, knn_top1)
RUNS = {
    "cdg_s0": ("cdg", 8, 1, 4, 2.0, 0.945, 0.85),
    "fbs_s0": ("fbs", "all", 1, 1, 2.0, 0.80, 0.75),
    "dense_s0": ("none", None, None, None, None, 0.95, 0.90),
}
# (accel, model, clock) -> run -> (time_us, energy_pj)
COSTS = {
    ("sys", "systolic", 1000): {"dense_s0": (40.0, 100.0), "cdg_s0": (20.0, 60.0), "fbs_s0": (30.0, 50.0)},
    ("sys", "systolic", 500): {"dense_s0": (80.0, 110.0), "cdg_s0": (40.0, 66.0), "fbs_s0": (60.0, 55.0)},
    ("gpu", "gpu", 1000): {"dense_s0": (10.0, 30.0), "cdg_s0": (9.0, 28.0), "fbs_s0": (12.0, 25.0)},
}
# layer, stage, dense_macs; gate density per run (None: not gated)
LAYERS = [("conv1", "conv1", 1000), ("layer1.0.conv1", "layer1", 4000), ("layer1.0.conv2", "layer1", 2000),
          ("layer2.0.conv1", "layer2", 4000)]
DENSITY = {"cdg_s0": [None, 0.4, 0.7, 0.5], "fbs_s0": [None, 0.5, 0.5, 0.5], "dense_s0": [None] * 4}
COMPONENTS = {"systolic": ("mac", "dram_ifmap", "index"), "gpu": ("mac", "static")}
POINT_COLUMNS = ["point_id", "run", "run_group", "run_path", "backbone", "ssl_method", "gate_method", "gate_S",
                 "gate_b", "gate_G", "target_reduction", "seed", "linear_top1", "knn_top1", "trained_reduction",
                 "accel", "accel_file", "accel_model", "accel_mode", "design", "param.clock_mhz", "mask_source",
                 "total_cycles", "dense_total_cycles", "speedup", "flops_reduction", "zero_work_removed", "time_us",
                 "energy_pj", "dense_energy_pj", "energy_saving", "dram_bytes", "utilisation",
                 "energy_mac_pj", "energy_dram_ifmap_pj", "energy_index_pj", "energy_static_pj"]
LAYER_COLUMNS = ["point_id", "layer_index", "layer", "stage", "gated", "granularity", "cycles", "total_cycles",
                 "dense_total_cycles", "speedup", "flops_reduction", "zero_work_removed", "gate_density",
                 "dense_macs", "energy_pj", "energy_mac_pj", "energy_dram_ifmap_pj", "energy_index_pj",
                 "energy_static_pj"]
LOSSES = [6.0, 5.8, 5.6, 5.5]


def _cell(v) -> str:
    return "" if v is None else str(v)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        w = csv.DictWriter(handle, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: _cell(r.get(c)) for c in columns})


def write_metrics(run_dir: Path, offset: float, gated: bool = False) -> None:
    lines = []
    for i, loss in enumerate(LOSSES):
        epoch = 0.5 * (i + 1)
        gate = {"gate_ratio": 0.9 - 0.1 * i, "gate_target": 0.9 - 0.1 * i, "train_macs_ideal": 1e6 * (0.9 - 0.1 * i),
                "train_macs_performed": 1.1e6} if gated else {}
        lines.append({"event": "train", "epoch": epoch, "step": 5 * (i + 1), "loss": loss + offset, "lr": 0.1, **gate})
        if epoch == int(epoch):
            lines.append({"event": "epoch", "epoch": int(epoch), "step": 5 * (i + 1), "time_s": 1.0})
            lines.append({"event": "knn", "epoch": int(epoch), "step": 5 * (i + 1), "top1": 0.5 + 0.1 * epoch + offset})
    text = "".join(json.dumps(x) + "\n" for x in lines)
    (run_dir / "metrics.jsonl").write_text(text + '{"event": "train", "epo', encoding="utf-8")  # cut last line


def make_sweep(tmp_path: Path) -> Path:
    """9 points: 3 runs x (systolic 'sys' at 2 clocks + 'gpu'), 4 layers each."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    run_paths = {}
    for i, run in enumerate(RUNS):
        d = tmp_path / "runs" / run
        d.mkdir(parents=True)
        write_metrics(d, offset=0.01 * i, gated=RUNS[run][0] != "none")
        run_paths[run] = str(d)
    points, layers = [], []
    n = 0
    for (accel, model, clock), per_run in COSTS.items():
        for run, (time_us, energy) in per_run.items():
            method, S, b, G, target, lin, knn = RUNS[run]
            pid = f"p{n:02d}"
            n += 1
            dens = DENSITY[run]
            fr = 1.0 if method == "none" else 2.0
            comps = {f"energy_{c}_pj": energy / len(COMPONENTS[model]) * (0 if c == "index" else 1.0 + (c == "mac"))
                     for c in COMPONENTS[model]}
            points.append({
                "point_id": pid, "run": run, "run_group": "runs", "run_path": run_paths[run], "backbone": "resnet18",
                "ssl_method": "simclr", "gate_method": method, "gate_S": S, "gate_b": b, "gate_G": G,
                "target_reduction": target, "seed": 0, "linear_top1": lin, "knn_top1": knn, "trained_reduction": fr,
                "accel": accel, "accel_file": f"accel_configs/{accel}.yaml", "accel_model": model,
                "accel_mode": f"{model} mode", "design": f"{accel}[clock_mhz={clock}]", "param.clock_mhz": clock,
                "mask_source": "masks", "total_cycles": time_us * clock, "dense_total_cycles": 40.0 * clock,
                "speedup": 40.0 / time_us, "flops_reduction": fr, "zero_work_removed": 0.5, "time_us": time_us,
                "energy_pj": energy, "dense_energy_pj": 100.0, "energy_saving": 1 - energy / 100.0,
                "dram_bytes": 1e5, "utilisation": 0.3, **comps,
            })
            for li, (name, stage, macs) in enumerate(LAYERS):
                d = dens[li]
                cyc = 100.0 * (li + 1) * (d if d is not None else 1.0) + 5
                layers.append({
                    "point_id": pid, "layer_index": li, "layer": name, "stage": stage, "gated": d is not None,
                    "granularity": "fold" if model == "systolic" else "tile", "cycles": cyc, "total_cycles": cyc + 10,
                    "dense_total_cycles": 100.0 * (li + 1) + 10, "speedup": (100.0 * (li + 1) + 10) / (cyc + 10),
                    "flops_reduction": 1.0 / d if d else 1.0, "zero_work_removed": 0.5, "gate_density": d,
                    "dense_macs": macs, "energy_pj": 10.0 * (li + 1),
                    **{f"energy_{c}_pj": 0.0 if c == "index" else 10.0 * (li + 1) / len(COMPONENTS[model])
                       for c in COMPONENTS[model]},
                })
    write_csv(sweep / "points.csv", POINT_COLUMNS, points)
    write_csv(sweep / "layers.csv", LAYER_COLUMNS, layers)
    accels = [{"file": f"accel_configs/{accel}.yaml", "name": accel, "model": model}
              for accel, model in dict((a, m) for a, m, _ in COSTS).items()]
    (sweep / "sweep.json").write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "status": "complete", "grid": {"source": "grid.yaml"},
        "runs": list(run_paths.values()), "accels": accels,
        "param_columns": ["param.clock_mhz"], "counts": {"points": 9, "done": 9}}), encoding="utf-8")
    return sweep


def _traces(fig, name: str):
    return [t for t in fig.data if t.name == name]


def test_html_is_self_contained_and_has_every_figure(tmp_path, capsys):
    sweep = make_sweep(tmp_path)
    out = tmp_path / "report.html"
    assert dashboard.main(["--sweep", str(sweep), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in page  # plotly.js inline, once
    assert page.count("plotly.js v") == get_plotlyjs().count("plotly.js v")
    # no external script, stylesheet, image or frame: nothing the browser would fetch
    assert not re.search(r"<script[^>]*\ssrc\s*=", page, re.I)
    assert not re.search(r"<(link|img|iframe)[^>]*(href|src)\s*=\s*[\"']?(https?:)?//", page, re.I)
    for name in FIGURES:
        assert f'id="fig-{name}"' in page and f'id="sec-{name}"' in page
    # header: sweep summary
    assert "9 points, 36 layer rows" in page and "3 runs" in page and "clock_mhz" in page
    assert not list(tmp_path.glob("**/.report.html.*.tmp"))  # atomic write left nothing behind


def test_figures_show_the_sweep(tmp_path):
    sweep = make_sweep(tmp_path)
    warnings = []
    dash = dashboard.build(sweep, warn=warnings.append)
    assert dash.accuracy == "linear_top1"
    figs = dash.figures
    # Pareto: every point, and the 2-D fronts per accelerator
    pareto = figs["pareto"]
    assert sum(len(t.x) for t in _traces(pareto, "sys")) == 2 * 6
    time_front, energy_front = _traces(pareto, "sys: Pareto front")
    assert list(time_front.x) == [20.0, 40.0] and list(time_front.y) == [0.945, 0.95]
    assert list(energy_front.x) == pytest.approx([50e-12, 60e-12, 100e-12])  # pJ drawn in joules
    assert list(energy_front.y) == [0.80, 0.945, 0.95]
    gpu_time, gpu_energy = _traces(pareto, "gpu: Pareto front")
    assert list(gpu_time.x) == [9.0, 10.0] and list(gpu_energy.x) == pytest.approx([25e-12, 28e-12, 30e-12])
    hover = time_front.text[0]
    for part in ("cdg_s0", "cdg", "S=8", "b=1", "accel sys", "clock_mhz=1000"):
        assert part in hover
    # parallel coordinates: categorical accel/method/S, the swept clock, outcomes
    pc = figs["parcoords"].data[0]
    labels = [d.label for d in pc.dimensions]
    assert labels[:4] == ["accel", "gate_method", "gate_S", "gate_b"] and "clock_mhz" in labels
    for col in ("linear_top1", "speedup", "time_us", "energy_pj"):
        assert col in labels
    gate_s = pc.dimensions[labels.index("gate_S")]
    assert list(gate_s.ticktext) == ["8", "all", "n/a"]
    assert len(pc.dimensions[0].values) == 9
    # per-layer bars: representative = fastest within 0.01 of the best accuracy, per accelerator
    assert [p["point_id"] for p in dash.chosen] == ["p01", "p07"]
    bars = figs["layers"]
    assert {t.name for t in bars.data} >= {"compute cycles", "memory-bound cycles (total - compute)",
                                           "energy: mac", "energy: dram_ifmap", "energy: static"}
    assert "energy: index" not in {t.name for t in bars.data}  # zero everywhere: no empty stack
    compute = _traces(bars, "compute cycles")[0]
    assert list(compute.x) == [name for name, _, _ in LAYERS] and list(compute.y) == [105.0, 85.0, 215.0, 205.0]
    assert list(_traces(bars, "memory-bound cycles (total - compute)")[0].y) == [10.0] * 4
    # gate density: runs x gated layers, and MAC-weighted per stage; the dense run has no row
    heat_layer, heat_stage = figs["gate_density"].data
    assert list(heat_layer.y) == ["cdg_s0", "fbs_s0"] and list(heat_layer.x) == [n for n, _, _ in LAYERS[1:]]
    assert [list(r) for r in heat_layer.z] == [[0.4, 0.7, 0.5], [0.5, 0.5, 0.5]]
    assert list(heat_stage.x) == ["layer1", "layer2"]
    assert heat_stage.z[0][0] == pytest.approx((0.4 * 4000 + 0.7 * 2000) / 6000)
    # FLOPs reduction vs speed-up: per accelerator, with the ideal line
    sp = figs["speedup"]
    ideal = _traces(sp, "ideal: speed-up = FLOPs reduction")
    assert len(ideal) == 2 and ideal[0].x[0] == ideal[0].y[0] == 1.0 and ideal[0].x[-1] == ideal[0].y[-1]
    gpu_times = [t for t, _ in COSTS[("gpu", "gpu", 1000)].values()]
    assert sorted(_traces(sp, "gpu")[0].y) == pytest.approx(sorted(40.0 / t for t in gpu_times))
    assert len(_traces(sp, "sys (layers)")[0].x) == 4 * 3  # 2 gated runs x 2 clocks x 3 gated layers
    # training curves: loss per logged step, kNN per epoch; the cut last line is skipped with a warning
    tr = figs["training"]
    loss = [t for t in tr.data if t.name == "cdg_s0"][0]
    assert list(loss.x) == [0.5, 1.0, 1.5, 2.0] and list(loss.y) == LOSSES
    knn = [t for t in tr.data if t.name == "cdg_s0"][1]
    assert list(knn.x) == [1, 2] and list(knn.y) == pytest.approx([0.6, 0.7])
    assert len(warnings) == 3 and all("1 lines that are not JSON objects skipped" in w for w in warnings)


def test_point_choice_and_missing_metrics(tmp_path, capsys):
    sweep = make_sweep(tmp_path)
    (tmp_path / "runs" / "fbs_s0" / "metrics.jsonl").unlink()
    out = tmp_path / "r.html"
    assert dashboard.main(["--sweep", str(sweep), "--out", str(out), "--point", "p05", "--accuracy", "knn_top1"]) == 0
    err = capsys.readouterr().err
    assert "metrics.jsonl: missing; the training curves leave run fbs_s0 out" in err
    page = out.read_text(encoding="utf-8")
    assert "(1 runs without metrics.jsonl left out)" in page and "knn_top1" in page
    dash = dashboard.build(sweep, point_ids=["p05"], warn=lambda m: None)
    assert [p["point_id"] for p in dash.chosen] == ["p05"]
    assert len(dash.figures["layers"].layout.annotations) == 2  # one row: cycles and energy titles


def _drop_column(path: Path, column: str) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cols = [c for c in rows[0] if c != column]
    write_csv(path, cols, rows)


def _blank_columns(path: Path, *columns: str) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    write_csv(path, list(rows[0]), [{**r, **{c: "" for c in columns}} for r in rows])


def test_accuracy_falls_back_to_knn(tmp_path):
    sweep = make_sweep(tmp_path)
    _blank_columns(sweep / "points.csv", "linear_top1")
    dash = dashboard.build(sweep, warn=lambda m: None)
    assert dash.accuracy == "knn_top1"
    assert list(_traces(dash.figures["pareto"], "gpu: Pareto front")[0].y) == [0.85, 0.90]


def _header_only(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")


BAD = {
    "no_dir": (lambda s: shutil.rmtree(s), ["--sweep: no such directory"]),
    "empty_dir": (lambda s: [p.unlink() for p in s.iterdir()], ["--sweep: empty directory"]),
    "no_points": (lambda s: (s / "points.csv").unlink(), ["points.csv: file: missing"]),
    "no_layers": (lambda s: (s / "layers.csv").unlink(), ["layers.csv: file: missing"]),
    "no_sweep_json": (lambda s: (s / "sweep.json").unlink(), ["sweep.json: file: missing"]),
    "bad_sweep_json": (lambda s: (s / "sweep.json").write_text("{", encoding="utf-8"), ["sweep.json: json:"]),
    "point_column": (lambda s: _drop_column(s / "points.csv", "speedup"), ["points.csv: speedup: column missing"]),
    "layer_column": (lambda s: _drop_column(s / "layers.csv", "gate_density"),
                     ["layers.csv: gate_density: column missing"]),
    "no_rows": (lambda s: _header_only(s / "points.csv"), ["points.csv: rows: no points"]),
    "layerless_point": (lambda s: _header_only(s / "layers.csv"), ["layers.csv: point_id p00: no layer rows"]),
    "no_accuracy": (lambda s: _blank_columns(s / "points.csv", "linear_top1", "knn_top1"),
                    ["points.csv: linear_top1: no point has an accuracy"]),
    "unknown_point": (lambda s: None, ["--point: nope: no such point_id"], ["--point", "nope"]),
    "out_is_dir": (lambda s: None, ["--out: is a directory"], None, True),
    "bad_flag": (lambda s: None, ["error: command line:"], ["--accuracy", "top5"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_user_errors_are_one_line(tmp_path, capsys, case):
    spec = BAD[case]
    mutate, expected = spec[0], spec[1]
    extra = spec[2] if len(spec) > 2 and spec[2] else []
    sweep = make_sweep(tmp_path)
    mutate(sweep)
    out = tmp_path if len(spec) > 3 else tmp_path / "report.html"
    with pytest.raises(SystemExit) as exc:
        dashboard.main(["--sweep", str(sweep), "--out", str(out), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for part in expected:
        assert part in err
    assert not (tmp_path / "report.html").exists()


def test_cli_process_exit_code_and_one_line(tmp_path):
    sweep = make_sweep(tmp_path)
    _drop_column(sweep / "layers.csv", "stage")
    proc = subprocess.run([sys.executable, "-m", "analysis.dashboard", "--sweep", str(sweep), "--out",
                           str(tmp_path / "r.html")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {sweep / 'layers.csv'}: stage: column missing "
                                                "(needed for the per-layer figures)"]


def test_png_export_unavailable_is_one_line(tmp_path, capsys, monkeypatch):
    sweep = make_sweep(tmp_path)
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido -> ImportError
    out, png = tmp_path / "r.html", tmp_path / "png"
    assert dashboard.main(["--sweep", str(sweep), "--out", str(out), "--png", str(png)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("PNG export unavailable: kaleido is not installed")
    assert out.is_file() and not png.exists()
    # kaleido present but unable to render (e.g. no Chrome): the reason, on one line
    monkeypatch.setitem(sys.modules, "kaleido", types.ModuleType("kaleido"))
    import plotly.io as pio

    def fail(*_a, **_k):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.\nInstall it with ...")

    monkeypatch.setattr(pio, "to_image", fail)
    files, why = dashboard.export_pngs(dashboard.build(sweep, warn=lambda m: None).figures, png)
    assert files == [] and "\n" not in why
    assert why.startswith("PNG export unavailable: kaleido could not render (RuntimeError: Kaleido requires Google")


CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and os.path.exists(p)), None)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (/usr/bin/chromium; .ci/run installs Debian's "
                                             "chromium package)")
def test_dashboard_renders_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright  # dev extra; never downloads a browser here

    sweep = make_sweep(tmp_path)
    out = tmp_path / "report.html"
    assert dashboard.main(["--sweep", str(sweep), "--out", str(out)]) == 0
    console, external = [], []
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS,
            viewport={"width": 1400, "height": 900}, timeout=60_000)
        try:
            page = ctx.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

            def route(r):
                if r.request.url.startswith(("file:", "data:", "blob:")):
                    r.continue_()
                else:
                    external.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(out.as_uri(), wait_until="load")
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= "
                                   f"{len(FIGURES)}", timeout=30_000)
            plots = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(d => {
                const r = d.querySelector('.main-svg').getBoundingClientRect();
                const gl = [...d.querySelectorAll('canvas')].map(c => c.width * c.height);
                return {id: d.id, w: r.width, h: r.height, gl: gl,
                        points: d.querySelectorAll('.scatterlayer path.point').length,
                        bars: d.querySelectorAll('.barlayer path').length,
                        heat: d.querySelectorAll('.hm image').length,
                        axes: d.querySelectorAll('.parcoords .y-axis').length};
            })""")
            # every subplot title and annotation lies inside its figure (long titles once ran off the left)
            clipped = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(d => {
                const f = d.querySelector('.main-svg').getBoundingClientRect();
                return [...d.querySelectorAll('.annotation-text, .gtitle')].map(a => [a.textContent,
                    a.getBoundingClientRect()]).filter(([t, r]) => r.width > 0 && (r.left < f.left - 1 ||
                    r.right > f.right + 1 || r.top < f.top - 1 || r.bottom > f.bottom + 1)).map(([t]) => d.id + ': ' + t);
            })""")
            # hovering a Pareto front diamond shows the run and its gate structure
            # (plotly's drag layer takes the mouse events and finds the nearest point itself)
            box = page.locator("#fig-pareto .scatterlayer .trace:nth-child(2) path.point").first.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_selector("#fig-pareto .hoverlayer .hovertext", timeout=5_000)
            hover = page.text_content("#fig-pareto .hoverlayer") or ""
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            ctx.close()
    errors = [m for m in console if m.startswith(("error", "pageerror"))]
    assert not errors, errors
    assert not external, external
    assert not clipped, clipped
    by_id = {p["id"]: p for p in plots}
    assert sorted(by_id) == sorted(f"fig-{n}" for n in FIGURES)
    for p in plots:
        assert p["w"] > 300 and p["h"] > 200, p
    assert by_id["fig-pareto"]["points"] >= 2 * 9  # every point, in both panels
    assert by_id["fig-speedup"]["points"] >= 9
    assert by_id["fig-training"]["points"] >= 2 * 3  # kNN markers
    assert by_id["fig-layers"]["bars"] >= 4 * 2
    assert by_id["fig-gate_density"]["heat"] == 2
    assert by_id["fig-parcoords"]["axes"] >= 8 and any(a > 0 for a in by_id["fig-parcoords"]["gl"])
    assert "S=" in hover and "accel" in hover
    shot = tmp_path / "dashboard.png"
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_out_never_overwrites_the_sweeps_own_files(tmp_path, capsys):
    sweep = make_sweep(tmp_path)
    (sweep / "journal.jsonl").write_text('{"point_id": "p"}\n')
    run_dir = Path(next(csv.DictReader(open(sweep / "points.csv")))["run_path"])
    link = tmp_path / "innocent.txt"
    link.symlink_to(sweep / "sweep.json")
    targets = [sweep / "journal.jsonl", sweep / "sweep.json", sweep / "points.csv", sweep / "new.txt", link,
               run_dir / "metrics.jsonl"]
    before = {p: p.read_bytes() for p in targets if p.exists()}
    for out in targets:
        with pytest.raises(SystemExit) as exc:
            dashboard.main(["--sweep", str(sweep), "--out", str(out)])
        assert exc.value.code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
        assert len(err) == 1 and "--out" in err[0] and "reads" in err[0], err
    assert {p: p.read_bytes() for p in before} == before and not (sweep / "new.txt").exists()
    assert dashboard.main(["--sweep", str(sweep), "--out", str(sweep / "dashboard.html")]) == 0
