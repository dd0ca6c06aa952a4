#!/usr/bin/env bash
# Run the whole test suite (installs what it needs first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A real Label Studio for the end-to-end test installs in the background while the other
# tests run; that test waits for it (see scripts/setup_labelstudio.sh).
if [ -z "${SKPEAL_LABEL_STUDIO:-}" ]; then
    bash scripts/setup_labelstudio.sh > .lsvenv.log 2>&1 &
    echo $! > .lsvenv.pid
fi
export HF_HUB_OFFLINE=1
status=0
.venv/bin/python -m pytest -q "$@" || status=$?
tail -n 3 .lsvenv.log 2>/dev/null || true
exit $status
