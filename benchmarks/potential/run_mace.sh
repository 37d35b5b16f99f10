#!/usr/bin/env bash
# Train a small MACE model (mace-torch 0.3.16, in .venv-mace) on the split files of make_splits.py for a
# fixed wall-clock budget, then evaluate the last checkpoint on the test files.
#
# usage: benchmarks/potential/run_mace.sh DATASET BUDGET_SECONDS [OUT_DIR]
#   DATASET          3bpa | acac
#   BUDGET_SECONDS   wall-clock limit of the training command (mace has no time-limit flag, so it runs
#                    under `timeout`; the budget includes mace's own start-up: reading the data, neighbour
#                    lists, statistics; log_times.py reports that part separately)
#   OUT_DIR          default runs/potential/mace/DATASET-MODEL-DTYPE-BUDGETs
# environment (defaults): DTYPE=float64 (or float32), THREADS=1, SEED=1, TIMING_ONLY=0,
#   MODEL=ScaleShiftMACE (or MACE), KEEP_CHECKPOINTS=0 (1 keeps every epoch's checkpoint, ~10 MB each),
#   SPLITS=runs/potential/splits, MACE_VENV=.venv-mace,
#   MACE_EXTRA="" (more mace_run_train flags, appended last so they override)
#
# MODEL: mace's "MACE" is a ScaleShiftMACE with shift 0 (scale = RMS force); "ScaleShiftMACE" also sets
# shift = mean interaction energy per atom of the training set, which is what gaunt's trainer does
# (scale = RMS force, shift = mean (E - sum E0)/N). Both use the non-residual first interaction here.
#
# Stages: 1. train under timeout, checkpoint (EMA weights) after every epoch;
#         2. log_times.py: time per step / epoch (TIMING_ONLY=1 stops here);
#         3. drop a checkpoint cut short by the kill, if any, and (unless KEEP_CHECKPOINTS=1) the older ones;
#         4. `--restart_latest --max_num_epochs 0`: mace loads the newest checkpoint, trains no further,
#            writes the whole model to OUT_DIR/mace_DATASET.model and logs its train/valid error table;
#         5. mace_eval_configs on each test file;  6. rmse.py (E and F RMSE on the test files).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '5,13p' "$0" >&2
    exit 2
fi
DATASET=$1
BUDGET=$2
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DTYPE=${DTYPE:-float64}
THREADS=${THREADS:-1}
SEED=${SEED:-1}
MODEL=${MODEL:-ScaleShiftMACE}
SPLITS=${SPLITS:-$REPO/runs/potential/splits}
VENV=${MACE_VENV:-$REPO/.venv-mace}
OUT=${3:-$REPO/runs/potential/mace/$DATASET-$MODEL-$DTYPE-${BUDGET}s}
# shellcheck disable=SC2206  # word splitting of extra flags is intended
EXTRA=(${MACE_EXTRA:-})

case $DATASET in
    3bpa) TESTS=(test_mixedT_not300K) ;;
    acac) TESTS=(test_MD_300K test_MD_600K) ;;
    *) echo "run_mace.sh: unknown dataset '$DATASET' (want 3bpa or acac)" >&2; exit 2 ;;
esac
DATA=$SPLITS/$DATASET
for f in train valid "${TESTS[@]}"; do
    [[ -f $DATA/$f.xyz ]] || { echo "run_mace.sh: missing $DATA/$f.xyz; run make_splits.py first" >&2; exit 2; }
done
[[ -x $VENV/bin/mace_run_train ]] || { echo "run_mace.sh: no mace_run_train in $VENV (see README.md)" >&2; exit 2; }
[[ $DTYPE == float64 || $DTYPE == float32 ]] || { echo "run_mace.sh: DTYPE must be float64 or float32" >&2; exit 2; }
[[ $MODEL == ScaleShiftMACE || $MODEL == MACE ]] || { echo "run_mace.sh: MODEL must be ScaleShiftMACE or MACE" >&2; exit 2; }
if [[ -e $OUT/checkpoints ]]; then
    echo "run_mace.sh: $OUT already holds checkpoints; pick another OUT_DIR or remove it" >&2
    exit 2
fi
mkdir -p "$OUT"

# One intra-op thread (torch reads OMP_NUM_THREADS), so timings compare with gaunt run alongside.
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
NAME=mace_$DATASET
ARGS=(
    --name "$NAME" --seed "$SEED" --device cpu --default_dtype "$DTYPE"
    --work_dir "$OUT" --model_dir "$OUT" --log_dir "$OUT/logs"
    --checkpoints_dir "$OUT/checkpoints" --results_dir "$OUT/results"
    --train_file "$DATA/train.xyz" --valid_file "$DATA/valid.xyz" --E0s "$DATA/e0s.json"
    --energy_key REF_energy --forces_key REF_forces
    --model "$MODEL" --interaction_first RealAgnosticInteractionBlock --r_max 5.0 --num_radial_basis 8 --num_cutoff_basis 5
    --num_channels 32 --max_L 1 --max_ell 3 --correlation 3 --num_interactions 2
    --batch_size 5 --valid_batch_size 10
    --loss weighted --energy_weight 1.0 --forces_weight 100.0
    --ema --ema_decay 0.99 --eval_interval 1 --save_all_checkpoints --patience 100000
    --plot False --num_workers 0 --pin_memory False --error_table PerAtomRMSE
    "${EXTRA[@]}"
)

echo "== 1. train $DATASET ($DTYPE, $THREADS thread(s)) for at most ${BUDGET}s -> $OUT"
date +%s.%N > "$OUT/train_start"
set +e
timeout --signal=TERM --kill-after=30 "$BUDGET" \
    "$VENV/bin/mace_run_train" "${ARGS[@]}" --max_num_epochs 100000 > "$OUT/train.out" 2>&1
rc=$?
set -e
date +%s.%N > "$OUT/train_end"
if [[ $rc -ne 0 && $rc -ne 124 ]]; then
    tail -20 "$OUT/train.out" >&2
    echo "run_mace.sh: mace_run_train failed (exit $rc); see $OUT/train.out" >&2
    exit 1
fi
echo "   training stopped (exit $rc; 124 = budget reached)"

echo "== 2. timing (from mace's per-step log)"
"$VENV/bin/python" "$HERE/log_times.py" "$OUT" --batch-size 5 --json "$OUT/timing.json"
[[ ${TIMING_ONLY:-0} == 1 ]] && exit 0

echo "== 3. check the newest checkpoint"
"$VENV/bin/python" - "$OUT/checkpoints" "${KEEP_CHECKPOINTS:-0}" <<'PY'
import re, sys
from pathlib import Path
import torch
files = sorted(Path(sys.argv[1]).glob("*_epoch-*.pt"), key=lambda p: int(re.search(r"_epoch-(\d+)", p.name).group(1)))
if not files:
    sys.exit("run_mace.sh: no checkpoint written within the budget (budget shorter than one epoch?)")
for k in range(len(files) - 1, -1, -1):
    try:
        torch.load(files[k], map_location="cpu", weights_only=False)
    except Exception as err:  # a file cut short by the kill: drop it and use the one before
        print(f"   removing unreadable {files[k].name}: {err}")
        files[k].unlink()
        continue
    print(f"   newest readable checkpoint: {files[k].name} ({len(files)} written)")
    if sys.argv[2] != "1":  # ~10 MB each (the contraction tensors are buffers); only the newest is used
        for older in files[:k]:
            older.unlink()
    break
else:
    sys.exit("run_mace.sh: no readable checkpoint")
PY

echo "== 4. export the newest checkpoint to $OUT/$NAME.model"
"$VENV/bin/mace_run_train" "${ARGS[@]}" --restart_latest --max_num_epochs 0 > "$OUT/export.out" 2>&1 || {
    tail -20 "$OUT/export.out" >&2; echo "run_mace.sh: export failed; see $OUT/export.out" >&2; exit 1; }
[[ -f $OUT/$NAME.model ]] || { echo "run_mace.sh: export wrote no $OUT/$NAME.model" >&2; exit 1; }
"$VENV/bin/python" - "$OUT/$NAME.model" "$OUT/model_info.json" <<'PY' 2>/dev/null
import json, sys
import torch
model = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
info = {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
        "shift": model.scale_shift.shift.tolist(), "scale": model.scale_shift.scale.tolist(),
        "r_max": float(model.r_max), "dtype": str(next(model.parameters()).dtype)}
json.dump(info, open(sys.argv[2], "w"), indent=1)
print("   " + json.dumps(info))
PY

echo "== 5. evaluate on ${TESTS[*]}"
mkdir -p "$OUT/eval"
EVALS=()
for t in "${TESTS[@]}"; do
    "$VENV/bin/mace_eval_configs" --configs "$DATA/$t.xyz" --model "$OUT/$NAME.model" \
        --output "$OUT/eval/$t.xyz" --default_dtype "$DTYPE" --batch_size 10 > "$OUT/eval/$t.out" 2>&1 || {
        tail -20 "$OUT/eval/$t.out" >&2; echo "run_mace.sh: mace_eval_configs failed on $t" >&2; exit 1; }
    EVALS+=("$OUT/eval/$t.xyz")
done

echo "== 6. errors"
"$VENV/bin/python" "$HERE/rmse.py" "${EVALS[@]}" --json "$OUT/rmse.json"

