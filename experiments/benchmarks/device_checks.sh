#!/usr/bin/env bash
# The GPU benchmarks, in one call on one lent GPU (about 5 minutes on an H200; `smoke`: about 1 minute,
# tiny shapes, to check that everything imports and runs on the machine before the full call).
#
#   bash experiments/benchmarks/device_checks.sh          # full
#   bash experiments/benchmarks/device_checks.sh smoke    # tiny shapes, any backend (CPU too)
#
# Each section runs in its own process under its own time limit, so one failure or overrun costs that
# section only; each writes its log to $OUT (default /tmp/device_checks), and everything is echoed.
# Each section also writes its rows and the machine record to $OUT/NAME.json (`--json`).
#   1. experiments.benchmarks.gpu_suite (matmul peak, conv passes per form, FCN/DeepLabV3 steps)
#   2. the multi-task model with 1 vs 5 tasks: images/s, XLA's and the allocator's peak memory
#   3. Mask R-CNN and Panoptic FPN R50-FPN training at batch 8 in bfloat16 (images/s, memory),
#      torchvision's Mask R-CNN beside it
set -u
MODE=${1:-full}
OUT=${OUT:-/tmp/device_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# XLA's Triton GEMM fusion can abort compiling the bf16 FCN / Mask R-CNN steps ("triton_tiling_propagation.cc:
# Check failed: subdim_size_accumulator == dim_size"); cuBLAS instead.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_triton_gemm=false"
cd "$(dirname "$0")/../.."

section() {  # section NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s): $* ; load $(cut -d' ' -f1-3 /proc/loadavg)"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v "^WARNING: All log messages before absl" | tee "$OUT/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

PY=${PYTHON:-python3}
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null

if [ "$MODE" = smoke ]; then
  section gpu_suite 150 "$PY" -m experiments.benchmarks.gpu_suite --smoke --json "$OUT/gpu_suite.json"
  section multitask 90 "$PY" -m experiments.benchmarks.multitask_memory --time --repeats 2 --batch 2 --size 64 \
    --json "$OUT/multitask.json"
  section detection 150 "$PY" -m experiments.benchmarks.detection --smoke --device-mode --json "$OUT/detection.json"
else
  section gpu_suite 240 "$PY" -m experiments.benchmarks.gpu_suite --repeats 5 --json "$OUT/gpu_suite.json"
  for dtype in bfloat16 float32; do
    section "multitask_$dtype" 150 "$PY" -m experiments.benchmarks.multitask_memory --model multitask \
      --batch 8 --size 256 --num-classes 21 --time --repeats 10 --dtype "$dtype" --json "$OUT/multitask_$dtype.json"
  done
  # JAX and PyTorch share the GPU in this section: JAX takes a fixed share instead of its default 75 %.
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 section detection 180 "$PY" -m experiments.benchmarks.detection \
    --device-mode --batch 8 --dtype bfloat16 --repeats 10 --json "$OUT/detection.json"
fi
