#!/usr/bin/env bash
# Download, here, the wheels that the GPU machine lacks, for benchmarks/gpu_check.sh.
#
# The device machine (issue 25) has no network; its python3 (3.12) has torch with CUDA,
# torchvision, timm, transformers, peft, scikit-learn, pandas, safetensors, pytest and
# hypothesis, but not open_clip_torch, ftfy, wcwidth or modAL-python. This script puts
# their wheels (about 2.4 MB, no dependencies) into benchmarks/gpu_wheels/ (ignored by
# git); the device call carries that folder and gpu_check.sh installs them there with
# `pip install --no-deps --no-index`. The versions are those installed beside the Python
# that runs this script (so the device runs what was tested here), else the pins below.
#
#   bash benchmarks/gpu_wheels.sh              # uses $PYTHON, else python3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=benchmarks/gpu_wheels
declare -A PIN=([open_clip_torch]=3.3.0 [ftfy]=6.3.1 [wcwidth]=0.9.4 [modAL-python]=0.4.2.1)
specs=()
for name in open_clip_torch ftfy wcwidth modAL-python; do
    v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" \
        2>/dev/null || echo "${PIN[$name]}")
    specs+=("$name==$v")
done
rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$DEST" "${specs[@]}"
ls -l "$DEST"
du -sh "$DEST"
