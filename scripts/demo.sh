#!/usr/bin/env bash
# The project's main job (installs what it needs first). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/skpeal demo "$@"
