"""Corrupted traces through ``hwsim.run``: every file truncated, bit-flipped, emptied, deleted or
overwritten, with the manifest left alone and recomputed; every field of ``trace.json`` given bad
values with a recomputed manifest; swapped mask files; paths and links leading out of the trace.

Each case must be refused in one line naming the file (or field), leaving the earlier outputs in
``--out`` as they were, or, where the change is harmless (a recomputed manifest over a flip that
zip and JSON both ignore), give exactly the pristine trace's results: no silent wrong result.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hwsim.run import main as hwsim_main
from hwsim.trace import GateGrid, TraceWriter, load_trace, make_layer
from hwsim.trace.io import sha256
from hwsim.trace.layout import MANIFEST, TRACE_JSON

from tests.faults.conftest import call, refused, snapshot

FILES = ("trace.json", "MANIFEST.json", "masks/L000.npz", "masks/L001.npz", "masks/L002.npz", "masks/L003.npz")


def _flip(mask: int, at: float):
    def apply(data: bytes) -> bytes:
        i = min(int(len(data) * at), len(data) - 1)
        return data[:i] + bytes([data[i] ^ mask]) + data[i + 1:]
    return apply


BYTE_FAULTS = {
    "truncated_half": lambda d: d[: len(d) // 2],
    "truncated_1": lambda d: d[:-1],
    "emptied": lambda d: b"",
    "flip01_at_10pc": _flip(0x01, 0.1),
    "flip01_at_50pc": _flip(0x01, 0.5),
    "flip80_at_50pc": _flip(0x80, 0.5),
    "flip01_at_90pc": _flip(0x01, 0.9),
    "garbage_appended": lambda d: d + b"\x00garbage\xff",
    "random_bytes": lambda d: np.random.default_rng(len(d)).integers(0, 256, len(d), dtype=np.uint8).tobytes(),
    "deleted": None,
}


def recompute_manifest(root: Path) -> None:
    """What a careless tool does after editing a trace: re-list every file with its new digest."""
    files = {p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (root / MANIFEST).write_text(json.dumps({"format_version": _version(root / TRACE_JSON), "files": files}))


def _version(path: Path):
    """trace.json's own format_version where it can be read (a careless tool copies it), else 2."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return 2
    return doc.get("format_version", 2) if isinstance(doc, dict) else 2


@pytest.fixture(scope="module")
def pristine(world, tmp_path_factory):
    """hwsim.run on the untouched trace: the results every harmless change must reproduce."""
    out = tmp_path_factory.mktemp("pristine")
    hwsim_main(["--accel", str(world["accel"]), "--trace", str(world["trace"]), "--out", str(out), "--quiet"])
    return json.loads((out / "hwsim.json").read_text()), out


def check(world, pristine, trace: Path, capsys, tmp_path, *needles: str) -> None:
    """Refused with the needles and ``--out`` untouched, or the pristine results exactly."""
    doc, pristine_out = pristine
    out = tmp_path / "out"
    shutil.copytree(pristine_out, out)
    before = snapshot(out)
    result = call(hwsim_main, ["--accel", world["accel"], "--trace", trace, "--out", out, "--quiet"], capsys)
    if result[0] == 0:
        assert json.loads((out / "hwsim.json").read_text()) == doc, "a changed trace gave different results"
        return
    refused(result, *needles)
    assert snapshot(out) == before


# recomputing the manifest would rewrite the manifest's own corruption: only "kept" for it
BYTE_CASES = [(name, fault, manifest) for name in FILES for fault in sorted(BYTE_FAULTS)
              for manifest in ("kept", "recomputed") if not (name == MANIFEST and manifest == "recomputed")]


@pytest.mark.parametrize("name,fault,manifest", BYTE_CASES)
def test_byte_faults(world, pristine, copy_of, capsys, tmp_path, name, fault, manifest):
    trace = copy_of(world["trace"])
    path = trace / name
    if BYTE_FAULTS[fault] is None:
        path.unlink()
    else:
        path.write_bytes(BYTE_FAULTS[fault](path.read_bytes()))
    if manifest == "recomputed":
        recompute_manifest(trace)
    check(world, pristine, trace, capsys, tmp_path, Path(name).name if manifest == "kept" else str(trace))


# ------------------------------------------------------------------------ trace.json field table
TOP_FIELDS = {
    "format_version": [0, 3, "2", True, None, 2.0],
    "n_mask_images": [-1, 3, 5, True, "4", 1.5, None],
    "meta": [[], "x", 5],
    "layers": [[], {}, "x", None],
}
LAYER_FIELDS = {
    "name": ["", 5, None, "stem", ["g1"]],
    "op": ["pool", None, 3],
    "in_shape": [5, [], [0, 8, 8], [8, 8], "abc", [8.5, 8, 8], [True, 8, 8], None, {"c": 8}],
    "out_shape": [[9, 8, 8], [8, 7, 8], [8, 8], 5],
    "kernel": [[0, 3], [3], "3", [3, 3, 3], 5.5],
    "stride": [[0, 1], [-1, 1], [1.5, 1]],
    "padding": [[-1, 1], ["1", 1], [9, 9]],
    "groups": [0, 3, True, "1", -2],
    "inputs": [["nope"], "stem", [1], None],
    "dense_macs": [0, 1, "x", -5],
    "stats": [None, "x", [], {}],
    "masks": ["x", 5, {}],
}
STATS_FIELDS = {
    "n_images": [0, -1, 3, True, 1.5, None, "4"],
    "gate_density_mean": [-0.1, 1.5, None, True, "x", float("nan"), "half", 0.0, 1.0],
    "gate_density_std": [-1.0, 2.0, None, "x"],
    "gate_density_hist": [[1] * 10, [4] + [0] * 9, [-1] * 10, "x", [0] * 9 + [4], [1, 1, 1, 1]],
    "input_act_density": [-0.5, 1.5, "x", True, float("inf")],
    "effective_macs": ["half", "double", 0, -1, float("inf"), float("nan"), None, True, "x"],
}
GATE_FIELDS = {"G": [0, "x", True], "S": [0, 99, 1, 3], "b": [0, 1, 4], "base_channels": [8, -1, 3, "x"]}
MASK_FIELDS = {
    "file": ["ABSOLUTE", "../outside.npz", "masks/L002.npz", "masks/../masks/L001.npz", "", 5, None,
             "masks/none.npz", "masks/L001.npz\x00x", "masks\\L001.npz"],
    "gate_grid": [[4, 4, 4, 4, 1], [3, 4, 4, 4], None, "x"],
    "act_shape": [[2, 8, 8, 9], [3, 8, 8, 8], "x"],
}


def _cases():
    for key, values in TOP_FIELDS.items():
        for i, v in enumerate(values):
            yield f"{key}-{i}", (lambda d, k=key, v=v: d.__setitem__(k, v))
    for layer in (1, 3):  # g1 (gated, masks), sc (ungated, activation masks)
        for key, values in LAYER_FIELDS.items():
            for i, v in enumerate(values):
                yield f"L{layer}.{key}-{i}", (lambda d, k=key, v=v, n=layer: d["layers"][n].__setitem__(k, v))
        for key, values in STATS_FIELDS.items():
            for i, v in enumerate(values):
                if layer == 3 and key in ("gate_density_mean",) and v == 1.0:
                    continue  # the right value for an ungated layer
                yield f"L{layer}.stats.{key}-{i}", (lambda d, k=key, v=v, n=layer: _set_stat(d["layers"][n], k, v))
        for key, values in MASK_FIELDS.items():
            for i, v in enumerate(values):
                if layer == 3 and key == "gate_grid" and v is None:
                    continue  # an ungated layer's grid is null
                yield f"L{layer}.masks.{key}-{i}", (lambda d, k=key, v=v, n=layer: d["layers"][n]["masks"].__setitem__(k, v))
    for key, values in GATE_FIELDS.items():
        for i, v in enumerate(values):
            yield f"L1.gate.{key}-{i}", (lambda d, k=key, v=v: d["layers"][1]["gate"].__setitem__(k, v))
    yield "L3.gate-added", lambda d: d["layers"][3].__setitem__("gate", {"G": 2, "S": 2, "b": 2})
    yield "L1.gate-removed", lambda d: d["layers"][1].__setitem__("gate", None)
    yield "L1.masks-removed", lambda d: d["layers"][1].__setitem__("masks", None)
    yield "layers-swapped", lambda d: d["layers"].__setitem__(slice(1, 3), d["layers"][2:0:-1])
    yield "layer-dropped", lambda d: d["layers"].pop(2)


def _set_stat(layer: dict, key: str, value) -> None:
    stats = layer["stats"]
    if value in ("half", "double") and isinstance(value, str):
        value = stats[key] * (0.5 if value == "half" else 2.0)
    stats[key] = value


CASES = dict(_cases())


@pytest.mark.parametrize("case", sorted(CASES))
def test_trace_json_fields(world, pristine, copy_of, capsys, tmp_path, case):
    trace = copy_of(world["trace"])
    outside = tmp_path / "outside.npz"
    shutil.copy(trace / "masks" / "L001.npz", outside)
    doc = json.loads((trace / TRACE_JSON).read_text())
    CASES[case](doc)
    text = json.dumps(doc).replace('"ABSOLUTE"', json.dumps(str(outside)))
    (trace / TRACE_JSON).write_text(text)
    recompute_manifest(trace)
    check(world, pristine, trace, capsys, tmp_path, str(trace))


# ------------------------------------------------------------------------ swaps, links, archives
def _twin(path: Path, version: int = 2) -> Path:
    """Two gated layers of the same shape (their mask files can be swapped unnoticed by shape)."""
    rng = np.random.default_rng(3)
    gate = GateGrid(G=2, S=2, b=2)
    stem = make_layer("stem", "conv", (3, 8, 8), 8, 3, 1, 1)
    a = make_layer("a", "conv", (8, 8, 8), 8, 3, 1, 1, gate=gate, inputs=["stem"])
    b = make_layer("b", "conv", (8, 8, 8), 8, 3, 1, 1, gate=gate, inputs=["a"])
    with TraceWriter(path, meta={"model": "twin"}) as tw:
        tw.add_layer(stem)
        tw.add_layer(a, gate_masks=rng.random(a.gate_grid(4)) < 0.3)
        tw.add_layer(b, gate_masks=rng.random(b.gate_grid(4)) < 0.7)
    if version == 1:  # what format 1 wrote: no layer name inside the mask files
        for npz in sorted((path / "masks").glob("*.npz")):
            with np.load(npz) as data:
                arrays = {k: data[k] for k in data.files if k != "layer"}
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            npz.write_bytes(buf.getvalue())
        doc = json.loads((path / TRACE_JSON).read_text())
        doc["format_version"] = 1
        (path / TRACE_JSON).write_text(json.dumps(doc))
        recompute_manifest(path)
    return path


@pytest.mark.parametrize("version", [1, 2])
def test_unswapped_twin_loads(tmp_path, version):
    assert [layer.spec.name for layer in load_trace(_twin(tmp_path / "t", version)).layers] == ["stem", "a", "b"]


@pytest.mark.parametrize("how", ["files_renamed", "index_swapped"])
@pytest.mark.parametrize("manifest", ["kept", "recomputed"])
@pytest.mark.parametrize("version", [1, 2])
def test_swapped_same_shape_masks(world, tmp_path, capsys, version, manifest, how):
    trace = _twin(tmp_path / "t", version)
    if how == "files_renamed":
        one, two = trace / "masks" / "L001.npz", trace / "masks" / "L002.npz"
        tmp = trace / "masks" / "tmp"
        one.rename(tmp)
        two.rename(one)
        tmp.rename(two)
    else:
        doc = json.loads((trace / TRACE_JSON).read_text())
        doc["layers"][1]["masks"]["file"], doc["layers"][2]["masks"]["file"] = "masks/L002.npz", "masks/L001.npz"
        (trace / TRACE_JSON).write_text(json.dumps(doc))
    if manifest == "recomputed":
        recompute_manifest(trace)
    refused(call(hwsim_main, ["--accel", world["accel"], "--trace", trace], capsys), str(trace))


def _link_mask_file(trace: Path, tmp: Path) -> None:
    outside = tmp / "elsewhere.npz"
    shutil.copy(trace / "masks" / "L001.npz", outside)
    (trace / "masks" / "L001.npz").unlink()
    (trace / "masks" / "L001.npz").symlink_to(outside)


def _link_mask_dir(trace: Path, tmp: Path) -> None:
    shutil.move(str(trace / "masks"), tmp / "masks_elsewhere")
    (trace / "masks").symlink_to(tmp / "masks_elsewhere")


def _link_trace_json(trace: Path, tmp: Path) -> None:
    shutil.move(str(trace / TRACE_JSON), tmp / "elsewhere.json")
    (trace / TRACE_JSON).symlink_to(tmp / "elsewhere.json")


def _manifest_entry(rel: str):
    def apply(trace: Path, tmp: Path) -> None:
        (tmp / "secret.txt").write_text("not part of the trace\n")
        doc = json.loads((trace / MANIFEST).read_text())
        target = tmp / "secret.txt"
        doc["files"][rel.replace("ABS", str(target))] = {"bytes": target.stat().st_size, "sha256": sha256(target)}
        (trace / MANIFEST).write_text(json.dumps(doc))
    return apply


def _npz_with(**arrays):
    def apply(trace: Path, tmp: Path) -> None:
        path = trace / "masks" / "L001.npz"
        with np.load(path) as data:
            have = {k: data[k] for k in data.files}
        have.update(arrays)
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: v for k, v in have.items() if v is not None})
        path.write_bytes(buf.getvalue())
        recompute_manifest(trace)
    return apply


def _zip_bomb(trace: Path, tmp: Path) -> None:
    path = trace / "masks" / "L001.npz"
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.npy", b"\x00" * (64 << 20))
    recompute_manifest(trace)


def _not_a_zip_member(trace: Path, tmp: Path) -> None:
    path = trace / "masks" / "L001.npz"
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("junk.npy", b"this is not an npy file")
    recompute_manifest(trace)


ESCAPES = {
    "mask_file_symlink_out": (_link_mask_file, "outside the trace"),
    "mask_dir_symlink_out": (_link_mask_dir, "outside the trace"),
    "trace_json_symlink_out": (_link_trace_json, "outside the trace"),
    "manifest_lists_dotdot": (_manifest_entry("../secret.txt"), "outside the trace"),
    "manifest_lists_absolute": (_manifest_entry("ABS"), "outside the trace"),
    "manifest_lists_dotdot_inner": (_manifest_entry("masks/../../secret.txt"), "outside the trace"),
    "npz_pickled_object": (_npz_with(gate_bits=np.array([{"a": 1}], dtype=object)), "L001.npz"),
    "npz_float_bits": (_npz_with(gate_bits=np.zeros(8, dtype=np.float32)), "gate_bits"),
    "npz_wrong_layer_name": (_npz_with(layer=np.array("g2")), "layer"),
    "npz_layer_name_bytes": (_npz_with(layer=np.frombuffer(b"g1", dtype=np.uint8)), "layer"),
    "npz_no_layer_name": (_npz_with(layer=None), "layer"),
    "npz_grid_lies": (_npz_with(gate_grid=np.array([4, 4, 4, 5])), "gate_grid"),
    "npz_act_shape_lies": (_npz_with(act_shape=np.array([2, 8, 8, 9])), "act_shape"),
    "npz_act_shape_2d": (_npz_with(act_shape=np.array([[2, 8], [8, 8]])), "act_shape"),
    "npz_grid_float": (_npz_with(gate_grid=np.array([4.0, 4.0, 4.0, 4.0])), "gate_grid"),
    "npz_act_bits_dropped": (_npz_with(act_bits=None), "act_bits"),
    "npz_gate_bits_dropped": (_npz_with(gate_bits=None), "gate_bits"),
    "npz_gate_bits_short": (_npz_with(gate_bits=np.zeros(3, dtype=np.uint8)), "gate_bits"),
    "npz_extra_array": (_npz_with(extra=np.zeros(3)), "extra"),
    "npz_zip_bomb": (_zip_bomb, "L001.npz"),
    "npz_junk_member": (_not_a_zip_member, "L001.npz"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_escapes_and_crafted_archives(world, pristine, copy_of, capsys, tmp_path, case):
    trace = copy_of(world["trace"])
    apply, needle = ESCAPES[case]
    apply(trace, tmp_path)
    doc, pristine_out = pristine
    out = tmp_path / "out"
    shutil.copytree(pristine_out, out)
    before = snapshot(out)
    refused(call(hwsim_main, ["--accel", world["accel"], "--trace", trace, "--out", out], capsys), needle)
    assert snapshot(out) == before


def test_a_trace_reached_through_a_symlink_is_fine(world, pristine, tmp_path, capsys):
    """Links are refused only where they lead out of the trace: the trace directory itself may be one."""
    (tmp_path / "link").symlink_to(world["trace"], target_is_directory=True)
    out = tmp_path / "out"
    assert call(hwsim_main, ["--accel", world["accel"], "--trace", tmp_path / "link", "--out", out], capsys)[0] == 0
    assert json.loads((out / "hwsim.json").read_text()) == pristine[0]


def test_a_format_1_trace_still_loads(capsys):
    data = Path(__file__).resolve().parents[1] / "data" / "cdg_digits_trace"
    accel = Path(__file__).resolve().parents[2] / "accel_configs" / "systolic_32x32_os.yaml"
    assert load_trace(data).format_version == 1
    assert call(hwsim_main, ["--accel", accel, "--trace", data, "--quiet"], capsys)[0] == 0


def test_every_byte_of_a_small_mask_file(world, copy_of, tmp_path):
    """Flip each byte of the smallest mask file in turn (manifest recomputed): each either loads to
    exactly the original masks or is refused with a HwsimError; nothing else escapes."""
    from hwsim.trace.errors import HwsimError

    trace = copy_of(world["trace"])
    path = trace / "masks" / "L000.npz"
    original = path.read_bytes()
    want = load_trace(world["trace"]).layers[0].act_masks
    outcomes = {"refused": 0, "same": 0}
    for i in range(0, len(original), max(1, len(original) // 97)):
        path.write_bytes(original[:i] + bytes([original[i] ^ 0x10]) + original[i + 1:])
        recompute_manifest(trace)
        try:
            got = load_trace(trace).layers[0].act_masks
        except HwsimError:
            outcomes["refused"] += 1
            continue
        assert np.array_equal(got, want), f"byte {i}: loaded different masks"
        outcomes["same"] += 1
    assert outcomes["refused"] > 0
