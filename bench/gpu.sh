#!/usr/bin/env bash
# The decoding benchmark on a CUDA machine with no network, in one call (about 8 minutes):
#   1. the embedded pair, bfloat16, batches 1 and 16;
#   2. a randomly initialised ~1.2B Llama base (bench/random_base.py, built from a config)
#      with the embedded guide, batch 16;
#   3. the 2-layer stand-ins of the embedded pair (bench/standin.py), batch 16.
# Results go to bench/results/gpu-*.json and are printed. Needs `make install` and a warm
# model cache (PAIRSCOPE_CACHE) or the embedded packages, and the data in
# PAIRSCOPE_DATA_DIR. Try the script on a CPU with DEVICE=cpu DTYPE=float32 SIZE=tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
SIZE=${SIZE:-1b}
NEW=${NEW_TOKENS:-64}
OUT=bench/results
mkdir -p "$OUT"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
common=(--device "$DEVICE" --dtype "$DTYPE" --new-tokens "$NEW")
methods=generate,base,nudging,blendin,floor_both_norm

echo "== embedded pair"
$PY bench/decode.py "${common[@]}" --batches 1,16 --methods "$methods,naive" \
  --naive-tokens 8 --out "$OUT/gpu-embedded.json"

echo "== random $SIZE Llama base + embedded guide"
$PY bench/random_base.py "$scratch/base" --size "$SIZE"
$PY bench/decode.py "${common[@]}" --batches 16 --methods "$methods" \
  --base "$scratch/base" --out "$OUT/gpu-random-base.json"

echo "== stand-ins"
$PY bench/decode.py "${common[@]}" --batches 16 --methods "$methods" --stand-in \
  --out "$OUT/gpu-standin.json"
