#!/usr/bin/env bash
# Instructions per forward+backward step of a product, before (BASE tree) and after (NEW tree) a change:
# callgrind's total with 1 and with 1+K steps, difference / K (imports and set-up cancel out).
#   benchmarks/refactor/callgrind.sh BASE_TREE NEW_TREE PRODUCT L MUL BATCH [K]
set -euo pipefail
base=$1; new=$2; product=$3; L=$4; mul=$5; batch=$6; K=${7:-5}
py=${PYTHON:-.venv/bin/python}
count() {  # tree repeats -> instructions
  PYTHONPATH=$1/src valgrind --tool=callgrind --callgrind-out-file=/dev/null "$py" benchmarks/refactor/step.py \
    "$product" "$L" "$mul" "$batch" "$2" 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for tree in "$base" "$new"; do
  one=$(count "$tree" 1); more=$(count "$tree" $((1 + K)))
  echo "$product L=$L mul=$mul batch=$batch $(basename "$tree"): $(( (more - one) / K )) instructions per step"
done
