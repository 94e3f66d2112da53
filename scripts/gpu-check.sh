#!/usr/bin/env bash
# The GPU check (README "GPU"). On a fresh machine with an NVIDIA GPU: install clipsearch with its GPU extras from
# the package registries into a new virtual environment (no model hub: the tests use the shipped tiny config and
# a model trained at run time, the bench seeded ViT-B-32 / ViT-L-14 weights), run the GPU tests (pytest -m gpu),
# then bench/gpu_throughput.py, and print one summary block. Made to finish in under 8 minutes on an H200.
#
# Without a GPU it says so, runs what it can here — the GPU tests (they skip, each with its reason) and the
# bench's decode-workers sweep — and exits 0.
#
# The log goes to $OUT/gpu-check.log when OUT is set (else to a new temporary folder, printed at the end).
#   bash scripts/gpu-check.sh
#   PYTHON=python3.12 GPU_CHECK_VENV=/tmp/gpu-venv bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
logdir=${OUT:-$(mktemp -d -t clipsearch-gpu-check.XXXXXX)}
mkdir -p "$logdir"
log=$logdir/gpu-check.log
exec > >(tee "$log") 2>&1
budget=${GPU_CHECK_SECONDS:-470}  # the whole run, so it fits an 8-minute window

gpu=""
if command -v nvidia-smi >/dev/null 2>&1; then
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
summary=()
verdict=0
py=${PYTHON:-python3}

if [ -n "$gpu" ]; then
    echo "== GPU: $gpu"
    venv=${GPU_CHECK_VENV:-.venv-gpu}
    t=$SECONDS
    # a venv of its own: a CPU build of faiss or onnxruntime installed elsewhere never shadows the GPU build
    if "$py" -m venv "$venv" && . "$venv/bin/activate" && py=python \
        && pip install -q --disable-pip-version-check -e ".[gpu,ray,torch]" "pytest>=8"; then
        summary+=("install: ok in $((SECONDS - t)) s; $(python - <<'PY'
import faiss, onnxruntime, torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, sees {torch.cuda.device_count()} GPU), "
      f"faiss {faiss.__version__} ({'GPU build, ' + str(faiss.get_num_gpus()) + ' GPU' if hasattr(faiss, 'StandardGpuResources') else 'CPU build'}), "
      f"onnxruntime {onnxruntime.__version__} ({', '.join(p for p in onnxruntime.get_available_providers() if 'CUDA' in p or 'Tensorrt' in p) or 'no CUDA provider'})")
PY
)")
    else
        summary+=("install: FAILED after $((SECONDS - t)) s (see the log above)")
        verdict=1
    fi
else
    echo "== no GPU found: nvidia-smi is missing or lists no GPU. Running what this machine can: the GPU tests"
    echo "   (each skips with its reason) and the bench's decode-workers sweep; exit 0."
    summary+=("GPU: none found (nvidia-smi missing or lists no GPU); nothing was run on a GPU")
fi

if [ "$verdict" = 0 ]; then
    echo "== pytest -m gpu"
    t=$SECONDS
    "$py" -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider
    rc=$?
    counts=$(grep -E "^[0-9]+ (passed|failed|skipped|error)" "$log" | tail -1)
    if [ -n "$gpu" ] && [ "$rc" != 0 ]; then verdict=1; fi
    summary+=("pytest -m gpu: ${counts:-exit $rc} (exit $rc, $((SECONDS - t)) s)")

    left=$((budget - (SECONDS - start)))
    echo "== bench/gpu_throughput.py ($left s left of $budget)"
    if [ -n "$gpu" ]; then
        bench=("$py" bench/gpu_throughput.py --json "$logdir/gpu_throughput.json")
    else
        bench=("$py" bench/gpu_throughput.py --decode-only --files 96 --unique 16 --json "$logdir/gpu_throughput.json")
    fi
    if [ "$left" -gt 30 ]; then
        timeout "$left" "${bench[@]}"
        rc=$?
        if [ "$rc" = 124 ]; then summary+=("bench: stopped at the time budget (rows up to there are in the log)"); fi
        if [ -s "$logdir/gpu_throughput.json" ]; then
            mapfile -t rows < <("$py" -c "import json,sys; print('\n'.join(json.load(open(sys.argv[1]))))" \
                "$logdir/gpu_throughput.json")
            for row in "${rows[@]}"; do summary+=("bench: $row"); done
        elif [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
            summary+=("bench: FAILED (exit $rc, see the log)")
            [ -n "$gpu" ] && verdict=1
        fi
    else
        summary+=("bench: not run (only $left s left of the $budget s budget)")
    fi
fi

echo
echo "===== clipsearch GPU check: summary ====="
echo "machine: ${gpu:-no GPU}, $(nproc) CPUs"
for line in "${summary[@]}"; do echo "$line"; done
echo "total: $((SECONDS - start)) s; log: $log"
if [ -z "$gpu" ]; then
    echo "verdict: NO GPU FOUND - the GPU path is not verified by this run (exit 0)"
    exit 0
fi
[ "$verdict" = 0 ] && echo "verdict: GPU checks passed" || echo "verdict: GPU checks FAILED"
exit "$verdict"
