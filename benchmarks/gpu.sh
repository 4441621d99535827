#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the CUDA tests, then each benchmark part on the GPU.
#
#     bash benchmarks/gpu.sh [OUT_DIR [PART...]]   # default: benchmarks/, every part
#
# Writes OUT_DIR/tests-cuda.log, OUT_DIR/bench-cuda.log and OUT_DIR/results-cuda.{json,md} (the parts
# not run keep their figures from an earlier results-cuda.json there). Each part runs on its own with
# a time limit, so one that overruns costs only its own figures.
set -u
out=${1:-benchmarks}
shift || true
parts=${*:-steps quality cudagraph memory presets compile}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_controls.py tests/test_optimize.py \
    2>&1 | tee "$out/tests-cuda.log"
for part in $parts; do
    echo "== $part"
    timeout 170 python3 benchmarks/bench.py --device cuda --only "$part" --repeat 10 --repeat-presets 2 \
        --out "$out/results-cuda" 2>&1 | tee -a "$out/bench-cuda.log"
done
