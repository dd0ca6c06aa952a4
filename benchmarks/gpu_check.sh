#!/usr/bin/env bash
# The GPU check of issue 25, whole, in one call of the device machine; --cpu: its dry run.
#
#   bash benchmarks/gpu_wheels.sh           # here, once: the wheels the device lacks
#   bash benchmarks/gpu_check.sh --cpu      # here: the dry run (tiny model, about a minute)
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from a copy of the
#                                           # checkout that includes benchmarks/gpu_wheels/
#                                           # (git-ignored: copy it along), OUT set
#
# Steps (each one's output in $OUT, which the device returns; at most 8 files there):
#   1. the machine: nvidia-smi, python, torch, CUDA                    -> env.txt
#   2. installs the carried wheels (benchmarks/gpu_wheels/*.whl) into a temporary folder
#      with `pip install --no-deps --no-index` and puts it on PYTHONPATH; without
#      wheels the packages must already import
#   3. `pytest -m gpu` over the test files that use the marker        -> pytest_gpu.log
#      (--cpu sets SKPEAL_GPU_DRY_RUN=1: the CUDA tests run their bodies on the CPU)
#   4. benchmarks/gpu_check.py: scoring images/s vs a bare forward, training steps,
#      peak GPU memory                                     -> gpu_check.md/.json/.log
# The exit status is 0 when every step passed, else the number of the first failing
# step. Time limits: tests 240 s, measurements 300 s (about 8 minutes in all at most).
#
# Environment: OUT (default runs/gpu_check), PYTHON (default python3), and
# GPU_CHECK_ARGS (extra arguments for gpu_check.py).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=gpu
for arg in "$@"; do
    case "$arg" in
        --cpu) MODE=cpu ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
                   exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (only --cpu)" >&2; exit 64 ;;
    esac
done
OUT=${OUT:-$ROOT/runs/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/skpeal-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
status=0
fail() { # step number, message
    echo "gpu_check: step $1 FAILED: $2" >&2
    [ "$status" -eq 0 ] && status=$1
}
step() { echo; echo "=== $(date -u +%H:%M:%S) step $*"; }

step "1: the machine ($MODE)"
{
    echo "mode: $MODE; date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(uname -srm)"
    echo "cores: $(nproc)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        nvidia-smi
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], sys.executable);
print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
      torch.cuda.is_available())'
} 2>&1 | tee "$OUT/env.txt"
if [ "$MODE" = gpu ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    fail 1 "torch sees no CUDA device (use --cpu for the dry run)"
    exit "$status"
fi

step "2: packages"
shopt -s nullglob
wheels=("$ROOT"/benchmarks/gpu_wheels/*.whl)
SITE=""
if [ ${#wheels[@]} -gt 0 ]; then
    SITE=$WORK/site
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$SITE" "${wheels[@]}"; then
        echo "installed ${#wheels[@]} carried wheels into $SITE: $(cd "$ROOT"/benchmarks/gpu_wheels && echo *.whl)"
    else
        fail 2 "pip could not install the carried wheels"
        SITE=""
    fi
elif [ "$MODE" = gpu ]; then
    echo "no wheels in benchmarks/gpu_wheels/ (run benchmarks/gpu_wheels.sh here first)"
fi
export PYTHONPATH="$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import open_clip, peft, sklearn, skpeal; print("open_clip", open_clip.__version__,
"from", open_clip.__file__); print("peft", peft.__version__, "skpeal", skpeal.__version__,
"from", skpeal.__file__)' 2>&1 | tee -a "$OUT/env.txt"; then
    fail 2 "skpeal or its dependencies do not import (see above)"
    exit "$status"
fi

step "3: pytest -m gpu"
mapfile -t files < <(grep -rlE --include='test_*.py' 'mark\.gpu' tests | sort)
echo "test files with the gpu marker: ${files[*]}"
if [ "$MODE" = cpu ]; then export SKPEAL_GPU_DRY_RUN=1; fi
timeout 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider -rs "${files[@]}" 2>&1 \
    | tee "$OUT/pytest_gpu.log"
rc=${PIPESTATUS[0]}
unset SKPEAL_GPU_DRY_RUN
[ "$rc" -eq 0 ] || fail 3 "pytest -m gpu exited with $rc"

step "4: measurements"
cpu_flag=()
[ "$MODE" = cpu ] && cpu_flag=(--cpu)
# shellcheck disable=SC2086 # GPU_CHECK_ARGS is a list of arguments
timeout 300 "$PY" benchmarks/gpu_check.py "${cpu_flag[@]}" --out "$OUT" ${GPU_CHECK_ARGS:-} \
    2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || fail 4 "gpu_check.py exited with $rc"

echo
echo "=== $(date -u +%H:%M:%S) done: status $status; results in $OUT: $(cd "$OUT" && echo *)"
exit "$status"
