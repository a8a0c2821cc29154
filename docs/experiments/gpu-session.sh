#!/usr/bin/env bash
# What one lent GPU session ran for docs/results.md (issue 5), from the repository root:
#
#   OUT=runs/gpu-session bash docs/experiments/gpu-session.sh
#
# 1. benchmarks/gpu.py: ResNet-50, 448 px, bf16 autocast, channels_last; ELoPE against the plain backbone,
#    training and inference images/s and peak memory, measured interleaved in the same run.
# 2. The CPU ablation recipe (docs/experiments/ablation-cpu.yaml) with 3 seeds for every Table 5 row and
#    every K of the sweep, as 8 `elope ablate` processes side by side on the one GPU (K = 4 is Table 5's
#    row "GKMP + L_w + L_b", the same config, so it is not trained twice). Each process stops at the
#    time limit; finished row-seeds keep their result.json, and `elope ablate --report` tabulates them.
set -u
OUT=${OUT:-runs/gpu-session}
LIMIT=${LIMIT:-400}   # seconds for the whole ablation
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())" | tee "$OUT/versions.txt"

timeout 150 python3 -m benchmarks.gpu --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"

CONFIG=docs/experiments/ablation-cpu.yaml
WORK=${WORK:-/tmp/elope-gpu-ablation}
mkdir -p "$WORK"
python3 -c "
from elope.config import load_config
from elope.data.synthetic import write_synthetic
s = load_config('synthetic', '$CONFIG').dataset.synthetic
write_synthetic('$WORK/data', **s.model_dump())"
export OMP_NUM_THREADS=2  # the GPU does the arithmetic; keep 8 processes from oversubscribing the CPUs
COMMON=(--config "$CONFIG" --root "$WORK/data" --seeds 3 --set train.deterministic=false
        --set dataset.num_workers=1)
start=$(date +%s)
deadline=$(( start + LIMIT ))
run() {  # one `elope ablate`, stopped at the shared deadline
    local left=$(( deadline - $(date +%s) ))
    (( left > 10 )) && timeout "$left" python3 -m elope ablate "${COMMON[@]}" "$@"
}
{
    (run --out "$WORK/table5" --rows 10; run --out "$WORK/k_sweep" --study k-sweep --ks 16 --seeds 1) &
    (run --out "$WORK/table5" --rows 9; run --out "$WORK/k_sweep" --study k-sweep --ks 16 --seeds 1 \
        --seed-offset 1) &
    (run --out "$WORK/table5" --rows 4; run --out "$WORK/k_sweep" --study k-sweep --ks 16 --seeds 1 \
        --seed-offset 2) &
    run --out "$WORK/table5" --rows 1,2 &
    run --out "$WORK/table5" --rows 3,5 &
    run --out "$WORK/table5" --rows 6,7 &
    (run --out "$WORK/table5" --rows 8; run --out "$WORK/k_sweep" --study k-sweep --ks 1) &
    run --out "$WORK/k_sweep" --study k-sweep --ks 2,8 &
    wait
} > "$OUT/ablation.log" 2>&1
echo "ablation wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/ablation.log"
for s in 0 1 2; do  # K = 4 is Table 5's "GKMP + L_w + L_b" (same config): reuse its seeds in the sweep
    if [[ -f $WORK/table5/gkmp-l-w-l-b/seed$s/result.json ]]; then
        mkdir -p "$WORK/k_sweep/k-4/seed$s"
        cp "$WORK/table5/gkmp-l-w-l-b/seed$s/result.json" "$WORK/k_sweep/k-4/seed$s/"
    fi
done
(cd "$WORK" && find . -name result.json -o -name config.yaml -o -name '*.md' | grep -v '^./data' \
    | tar czf - -T -) > "$OUT/ablation.tgz"
grep -h "test top-1" "$OUT/ablation.log" | sort | tail -n 60
