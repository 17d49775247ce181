#!/usr/bin/env bash
# The CUDA check of issue #12, in one script: memory estimate vs measured peak on CUDA (item 3) and trial
# throughput vs PEFT + Trainer (item 4), on a bare CUDA machine with no network, in under 8 minutes.
# Writes bench/results/memory_accuracy_cuda.json and bench/results/trial_throughput_cuda.json, and copies
# them (with the log) to $OUT when it is set.
#
# The machine has torch, transformers, peft and accelerate; bitsandbytes (the 4-bit / 8-bit rows) travels
# as a wheel under .whl/ (41 MiB; the working tree that travels must stay under 64 MiB). Fetch it once,
# on a machine with network, in the repository root:
#
#   echo /.whl/ >> .git/info/exclude   # (.gitignore already has it)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl bitsandbytes==0.50.2
#
# (its other needs — torch, numpy, packaging — are on the machine). The first thing this script runs:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#
# Then, from a session with a GPU (device tool):  run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)
# (worst case by its timeouts: ~20 s install + 200 + 200 + 2 × 30 s = 480 s)
#
# Dry run, anywhere (CPU, tiny shapes, results under bench/work/, nothing claims CUDA figures):
#   bash bench/gpu_check.sh --dry-run        (or LORATUNE_GPU_DRY_RUN=1 bash bench/gpu_check.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
DRY=${LORATUNE_GPU_DRY_RUN:-0}
[ "${1:-}" = "--dry-run" ] && DRY=1
[ "$DRY" = "0" ] && DRY=""
export PYTHONUNBUFFERED=1 LORATUNE_THREADS=${LORATUNE_THREADS:-4} TOKENIZERS_PARALLELISM=false
LOG=${OUT:-$ROOT/bench/work}/gpu_check.log
mkdir -p "$(dirname "$LOG")" "$ROOT/bench/work"
exec > >(tee "$LOG") 2>&1
started=$(date +%s)
echo "gpu_check: $(date -u +%FT%TZ) dry_run=${DRY:-0} python=$($PY -c 'import sys; print(sys.version.split()[0])')"

# ---- 1. wheels (bitsandbytes), then loratune from this checkout
SITE=/tmp/site
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || { echo "gpu_check: installing .whl/ failed"; exit 1; }
    export PYTHONPATH=$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}
else
    echo "gpu_check: no .whl/ wheels: the 4-bit/8-bit rows need bitsandbytes (they are recorded as failed without it)"
    export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
fi
$PY - <<'EOF'
import torch, transformers, peft
print(f"torch {torch.__version__} cuda={torch.cuda.is_available()} transformers {transformers.__version__} peft {peft.__version__}")
try:
    import bitsandbytes
    print(f"bitsandbytes {bitsandbytes.__version__}")
except ImportError as e:
    print(f"bitsandbytes: not importable ({e})")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv

FLAGS=(--device cuda)
[ -n "$DRY" ] && FLAGS+=(--dry-run)
status=0

# ---- 2. item 3: memory accuracy on CUDA (14 rows; rows left after 150 s are recorded as skipped; the JSON is
#         rewritten after every row, so a run cut short by the timeout keeps what it measured)
timeout 200 $PY bench/memory_accuracy.py "${FLAGS[@]}" --budget-seconds 150 || { echo "gpu_check: memory bench exit $?"; status=1; }

# ---- 3. item 4: throughput vs PEFT + Trainer (SmolLM2-135M shape, then Llama-3.1-8B shape with QLoRA arms)
timeout 200 $PY bench/trial_throughput.py "${FLAGS[@]}" --budget-seconds 90 || { echo "gpu_check: throughput bench exit $?"; status=1; }

# ---- 4. pre-flight as a user runs it (budget --measure on the device), one line each
if [ -n "$DRY" ]; then
    timeout 60 $PY -m loratune.cli.app budget smollm2-135m --r 8 --batch-size 1 --seq-len 64 --dtype fp32 --device cpu --measure \
        || echo "gpu_check: budget --measure (cpu) failed"
else
    for q in none 4bit; do
        timeout 30 $PY -m loratune.cli.app budget smollm2-135m --r 8 --batch-size 4 --seq-len 512 --quant $q --device cuda --measure \
            || echo "gpu_check: budget --measure --quant $q failed"
    done
fi

# ---- 5. results back
if [ -n "$DRY" ]; then
    files=(bench/work/memory_accuracy_cuda_dryrun.json bench/work/trial_throughput_cuda_dryrun.json)
else
    files=(bench/results/memory_accuracy_cuda.json bench/results/trial_throughput_cuda.json)
fi
if [ -n "${OUT:-}" ]; then
    for f in "${files[@]}"; do [ -f "$f" ] && cp "$f" "$OUT/"; done
fi
echo "gpu_check: done in $(( $(date +%s) - started )) s, status $status: ${files[*]}"
exit $status
