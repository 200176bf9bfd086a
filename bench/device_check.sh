#!/usr/bin/env bash
# One prepared GPU check for issue 16 (at most 150 s + 10 x 30 s = 7.5 minutes, by its timeouts): CDG's training step vs dense
# (bench/train_step.py), and the sparse executor's speed-up per gate structure (python -m
# cdg.execute --synthetic) at batch 1 and 32. Writes one JSON: $OUT/device_check.json
# (OUT defaults to ./device_check_out), plus the per-run execution.json files and the raw logs.
#
#   bash bench/device_check.sh              # on a CUDA machine
#   DEVICE=cpu bash bench/device_check.sh   # dry run on CPU, tiny sizes: checks the script itself
#   bash bench/device_check.sh --dry-run    # the same
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./device_check_out}"
DEVICE="${DEVICE:-cuda}"
if [[ "${1:-}" == "--dry-run" ]]; then DEVICE=cpu; fi
PY="${PYTHON:-python}"
mkdir -p "$OUT"
if [[ "$DEVICE" == "cuda" ]]; then
  TRAIN=(--arch resnet18 --width 1.0 --image-size 32 --batch 256 --steps 20 --warmup 5)
  SIZE=128; REPS=20; WARM=5; BATCHES="1 32"; WIDTH=1.0; STEM=imagenet; EXEC_T=30
  STRUCTURES="pixel block2 block4 channel8 unstructured"
else
  TRAIN=(--arch resnet18 --width 0.125 --image-size 16 --batch 16 --steps 2 --warmup 1 --threads 1)
  SIZE=16; REPS=1; WARM=0; BATCHES="1 2"; WIDTH=0.125; STEM=cifar; EXEC_T=150  # a loaded CPU is slow to start
  STRUCTURES="pixel block2"
fi
start=$(date +%s)
echo "[device_check] training step, $DEVICE" >&2
timeout 150 "$PY" bench/train_step.py --device "$DEVICE" --methods simclr --gates none cdg "${TRAIN[@]}" \
  > "$OUT/train_step.txt" 2> "$OUT/train_step.err" || echo "train_step failed (rc $?)" >> "$OUT/train_step.err"
for batch in $BATCHES; do
  for s in $STRUCTURES; do
    echo "[device_check] executor $s batch $batch" >&2
    timeout "$EXEC_T" "$PY" -m cdg.execute --synthetic --device "$DEVICE" --arch resnet18 --width "$WIDTH" --stem "$STEM" \
      --image-size "$SIZE" --structure "$s" --reduction 2 --batch "$batch" --warmup "$WARM" \
      --repetitions "$REPS" --channels-last --no-progress --out "$OUT/exec_${s}_b${batch}" \
      > "$OUT/exec_${s}_b${batch}.txt" 2>&1 || echo "failed (rc $?)" >> "$OUT/exec_${s}_b${batch}.txt"
  done
done
"$PY" - "$OUT" "$DEVICE" "$start" <<'PYEOF'
import json, pathlib, sys, time
out, device, start = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
doc = {"device": device, "seconds": round(time.time() - start, 1),
       "train_step": {"stdout": (out / "train_step.txt").read_text(), "stderr": (out / "train_step.err").read_text()[-4000:]},
       "executor": []}
try:
    import torch
    doc["torch_version"] = torch.__version__
    doc["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as exc:  # the JSON is written whatever failed before
    doc["torch_error"] = str(exc)
for path in sorted(out.glob("exec_*/execution.json")):
    e = json.loads(path.read_text())
    doc["executor"].append({"structure": e["structure"], "batch": e["batch"], "image_size": e["image_size"],
                            "density": e["density_requested"], "dense_ms": e["total"]["dense_ms"],
                            "sparse_ms": e["total"]["sparse_ms"], "speedup": e["total"]["speedup"],
                            "max_abs_error": e["max_abs_error"], "file": str(path.relative_to(out))})
doc["failed"] = sorted(p.name for p in out.glob("exec_*.txt") if "failed (rc" in p.read_text())
(out / "device_check.json").write_text(json.dumps(doc, indent=2))
print(f"wrote {out / 'device_check.json'}: {len(doc['executor'])} executor runs, failed: {doc['failed'] or 'none'}")
PYEOF
