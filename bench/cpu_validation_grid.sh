#!/usr/bin/env bash
# Measure the sparse executor on synthetic gated ResNet-18s and hold the cpu model against it:
#   bench/cpu_validation_grid.sh OUT_DIR [ACCEL]            # small grid: 3 structures x 2 densities, batch 1, 64 px
#   GRID=full bench/cpu_validation_grid.sh OUT_DIR [ACCEL]  # the grid: 5 structures x 3 densities x batch 1, 32 x 2 sizes
# Needs python -m cdg.execute (the sparse executor). Writes OUT_DIR/<structure>_d<density>_b<batch>_<size>px/
# (execution.json + trace/) and OUT_DIR/validation/ (python -m analysis.validate). THREADS (default 1) sets
# torch's threads for the measurements; calibrate the accelerator YAML at the same count.
set -euo pipefail
out=${1:?usage: bench/cpu_validation_grid.sh OUT_DIR [ACCEL]}
accel=${2:-accel_configs/cpu_host.yaml}
threads=${THREADS:-1}
py=${PYTHON:-python}
if [[ ${GRID:-small} == full ]]; then
  structures="pixel block2 block4 channel16_block2 unstructured"; densities="0.3 0.5 0.7"; batches="1 32"; sizes="64 112"
else
  structures="pixel block2 block4"; densities="0.3 0.6"; batches="1"; sizes="64"
fi
runs=()
for s in $structures; do for d in $densities; do for b in $batches; do for px in $sizes; do
  dir="$out/${s}_d${d}_b${b}_${px}px"
  "$py" -m cdg.execute --synthetic --structure "$s" --density "$d" --batch "$b" --image-size "$px" \
      --threads "$threads" --warmup 2 --repetitions 9 --no-progress --out "$dir" | tail -1
  runs+=("$dir")
done; done; done; done
"$py" -m analysis.validate --runs "${runs[@]}" --accel "$accel" --out "$out/validation"
