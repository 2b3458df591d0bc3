#!/usr/bin/env bash
# GPU checks in one command (for a lent GPU machine): environment, CUDA smoke tests, then the benchmarks.
# Usage: bash bench/gpu_check.sh [outdir]   (writes logs to outdir, default bench/out)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out}
mkdir -p "$out"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1

if [ ! -x .venv/bin/python ]; then
  $PY -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt || exit 1
fi
PY=.venv/bin/python
$PY - <<'PYEOF' 2>&1 | tee "$out/env.txt"
import torch, timm, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
print("timm", timm.__version__, "transformers", transformers.__version__)
PYEOF

# correctness on the GPU: capture vs CPU (fp32, bf16, fp16), dataset MAD vs CPU, the app on cuda
$PY bench/gpu_smoke.py --device cuda 2>&1 | tee "$out/smoke.txt"
for dtype in float32 bfloat16; do
  $PY bench/vision.py --device cuda --dtype "$dtype" --repeats 30 2>&1 | tee "$out/vision_$dtype.txt"
done
[ -f bench/distance.py ] && $PY bench/distance.py --device cuda 2>&1 | tee "$out/distance.txt"
[ -f bench/text.py ] && $PY bench/text.py --device cuda 2>&1 | tee "$out/text.txt"
exit 0
