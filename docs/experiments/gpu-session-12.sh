#!/usr/bin/env bash
# Issue 12 on a lent GPU, one command from the repository root (about 8-10 minutes, most of it compiling):
#
#   OUT=runs/gpu-12 bash docs/experiments/gpu-session-12.sh
#
# 1. benchmarks/gpu.py --compile reduce-overhead --no-train: ResNet-50, 448 px, bf16 autocast,
#    channels_last; for batch 32 and 128, the plain network and ELoPE.predict eager and compiled the same
#    way (batch norms folded, torch.compile mode reduce-overhead = CUDA graphs, dynamic=False), interleaved
#    in one run. Target: ELoPE / plain <= 1.05 compiled (ratio.infer_time_b32_compiled / _b128_compiled).
# 2. The same for the training step at the paper's batch 14 (--no-infer), with what time is left.
# Then copy $OUT/*.json and *.log to docs/experiments/h200/ (or the GPU's name) and fill in the table of
# docs/results.md, section "GPU: the pipeline compiled".
set -u
OUT=${OUT:-runs/gpu-12}
LIMIT=${LIMIT:-560}  # seconds for both parts (the lent machine runs one command for at most 600 s)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, torch.cuda.get_device_name())" | tee "$OUT/versions.txt"

timeout 380 python3 -m benchmarks.gpu --compile reduce-overhead --no-train \
    --json "$OUT/gpu-compiled-infer.json" 2>&1 | tee "$OUT/gpu-compiled-infer.log"

left=$(( LIMIT - ($(date +%s) - start) ))
if (( left > 120 )); then
    timeout "$left" python3 -m benchmarks.gpu --compile reduce-overhead --no-infer \
        --json "$OUT/gpu-compiled-train.json" 2>&1 | tee "$OUT/gpu-compiled-train.log"
else
    echo "no time left for the training step ($left s)" | tee "$OUT/gpu-compiled-train.log"
fi
echo "wall time: $(( $(date +%s) - start )) s"
