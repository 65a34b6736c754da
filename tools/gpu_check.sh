#!/usr/bin/env bash
# The GPU check (tools/gpu_check.py) from a checkout: provider used, GPU results = CPU results,
# frames/s of 1/4/16 streams at 1080p. Needs onnxruntime-gpu (pip install -e '.[gpu]') and the
# models and media in STREAMCNN_ASSETS (default ../shared). Exit: 0 ok, 1 a check failed, 2 no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAMCNN_ASSETS="${STREAMCNN_ASSETS:-../shared}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec "$PY" tools/gpu_check.py "$@"
