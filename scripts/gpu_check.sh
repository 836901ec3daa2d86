#!/usr/bin/env bash
# The GPU check of issue #19: train the tiny and vit-b-32 presets a fixed number of steps at 224 px
# with masking, and print model-step and data-pipeline samples/s, the workers needed, peak GPU
# memory and the loss curve (benchmarks/bench_train.py does the work; docs/benchmarks.md has the
# results). Needs only torch, transformers, tokenizers, pillow, numpy and pyarrow; inputs are
# generated from the bundled samples into a temporary directory.
#
#   scripts/gpu_check.sh                 # the full check (a GPU: ~5 minutes)
#   scripts/gpu_check.sh --quick         # a few steps of small batches: checks the script on a CPU
#   scripts/gpu_check.sh --steps 50      # more timed steps
#   PYTHON=/path/to/python scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
steps=30 batch=64 tokens=256 workers="1 2 4 8" compile=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) steps=2 batch=4 tokens=6 workers="0 1"; shift ;;
    --steps) steps=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --compile) compile=--compile; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" - <<'PY'
import os, torch, transformers
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
print(f"torch {torch.__version__}, transformers {transformers.__version__}, GPU: {gpu}, CPUs: {os.cpu_count()}")
PY
for preset in tiny vit-b-32; do
  # shellcheck disable=SC2086  # $workers is a list of numbers
  "$python" benchmarks/bench_train.py --preset "$preset" --steps "$steps" --batch-size "$batch" \
    --tokens "$tokens" --workers $workers $compile
done
