#!/usr/bin/env bash
# Train a gaunt potential on the split files of make_splits.py for a fixed wall-clock budget, the same way
# run_mace.sh trains mace-torch, then evaluate it on the test files.
#
# usage: benchmarks/potential/run_gaunt.sh DATASET PRODUCT BUDGET_SECONDS [OUT_DIR]
#   DATASET          3bpa | acac
#   PRODUCT          grid (Gaunt product by quadrature) | gaunt (Gaunt by FFT) | cg (Clebsch-Gordan)
#   BUDGET_SECONDS   wall-clock limit of the training command, start-up included (as for mace: `timeout`)
# environment (defaults): DTYPE=float64, THREADS=1, SEED=1, SPLITS=runs/potential/splits, VENV=.venv
#
# Stages: 1. `gaunt train` under timeout (a checkpoint after every epoch; the run is killed at the budget);
#         2. `gaunt train --resume --max_num_epochs <epochs done>`: loads the last checkpoint, trains no
#            further, writes the model (EMA weights of the last finished epoch, as run_mace.sh) and the table;
#         3. `gaunt evaluate` on each test file (prints E and F RMSE).
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '5,9p' "$0" >&2
    exit 2
fi
DATASET=$1
PRODUCT=$2
BUDGET=$3
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DTYPE=${DTYPE:-float64}
THREADS=${THREADS:-1}
SEED=${SEED:-1}
SPLITS=${SPLITS:-$REPO/runs/potential/splits}
VENV=${VENV:-$REPO/.venv}
OUT=${4:-$REPO/runs/potential/gaunt/$DATASET-$PRODUCT-$DTYPE-${BUDGET}s}

case $DATASET in
    3bpa) TESTS=(test_mixedT_not300K) ;;
    acac) TESTS=(test_MD_300K test_MD_600K) ;;
    *) echo "run_gaunt.sh: unknown dataset '$DATASET' (want 3bpa or acac)" >&2; exit 2 ;;
esac
DATA=$SPLITS/$DATASET
for f in train valid e0s.json "${TESTS[@]/%/.xyz}"; do
    [[ -f $DATA/$f || -f $DATA/$f.xyz ]] || { echo "run_gaunt.sh: missing $DATA/$f; run make_splits.py first" >&2; exit 2; }
done
if [[ -e $OUT/checkpoints ]]; then
    echo "run_gaunt.sh: $OUT already holds checkpoints; pick another OUT_DIR or remove it" >&2
    exit 2
fi
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
NAME=gaunt_$DATASET
ARGS=(
    --name "$NAME" --work_dir "$OUT" --seed "$SEED" --device cpu --default_dtype "$DTYPE"
    --train_file "$DATA/train.xyz" --valid_file "$DATA/valid.xyz" --E0s "$(cat "$DATA/e0s.json")"
    --energy_key REF_energy --forces_key REF_forces
    --product "$PRODUCT" --r_max 5.0 --num_radial_basis 8 --num_channels 32 --max_L 1 --max_ell 3
    --correlation 3 --num_interactions 2
    --batch_size 5 --valid_batch_size 10 --lr 0.01 --energy_weight 1.0 --forces_weight 100.0
    --ema --ema_decay 0.99 --scheduler plateau --final_model last --no-progress --no-plot
)

start=$(date +%s)
set +e
timeout --signal=KILL "$BUDGET" "$VENV/bin/gaunt" train "${ARGS[@]}" --max_num_epochs 100000 > "$OUT/train.log" 2>&1
status=$?
set -e
echo "training: exit $status after $(( $(date +%s) - start )) s (budget $BUDGET s; 137 = killed at the budget)"
EPOCHS=$(grep -c '^epoch' "$OUT/train.log" || true)
echo "epochs completed: $EPOCHS"
if [[ $EPOCHS -lt 1 ]]; then
    echo "run_gaunt.sh: no epoch finished within $BUDGET s (see $OUT/train.log); give a larger budget" >&2
    exit 1
fi
"$VENV/bin/gaunt" train "${ARGS[@]}" --resume --max_num_epochs "$EPOCHS" --plot > "$OUT/final.log" 2>&1
tail -n 8 "$OUT/final.log"
for t in "${TESTS[@]}"; do
    echo "== $t"
    "$VENV/bin/gaunt" evaluate --model "$OUT/$NAME.model" --configs "$DATA/$t.xyz" --energy_key REF_energy \
        --forces_key REF_forces --output "$OUT/$t.pred.xyz" --default_dtype "$DTYPE" | tail -n 4
done
