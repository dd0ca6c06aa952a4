#!/usr/bin/env bash
# Install a real Label Studio into ./.lsvenv, a venv of its own (it pins many packages that
# clash with ours), for tests/labeling/test_labelstudio_e2e.py. Idempotent.
#
# scripts/test.sh runs it in the background while the tests run (it takes minutes); the
# end-to-end test waits for it (.lsvenv.pid names the running install, .lsvenv.log holds
# its output) and is skipped, saying why, only when the install failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LS_PINS="label-studio==1.23.2 label-studio-sdk==2.1.2"
# every other package of the venv is pinned too (sentry-sdk 3 breaks Label Studio 1.23.2)
CONSTRAINTS=constraints/labelstudio.txt
STAMP="$LS_PINS $(cksum < $CONSTRAINTS)"
if [ -x .lsvenv/bin/label-studio ] && [ "$(cat .lsvenv/.skpeal-pins 2>/dev/null)" = "$STAMP" ]; then
    exit 0
fi
echo "setup: installing Label Studio ($LS_PINS) into .lsvenv for the end-to-end test" >&2
rm -rf .lsvenv .lsvenv.failed
install() {
    "$PY" -m venv .lsvenv || return 1
    # (this machine's pip lists local mirror folders that do not hold these packages)
    .lsvenv/bin/python -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" $LS_PINS 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory"
    return "${PIPESTATUS[0]}"
}
if install; then
    echo "$STAMP" > .lsvenv/.skpeal-pins
    echo "setup: Label Studio installed in .lsvenv" >&2
else
    rm -rf .lsvenv
    echo "pip install $LS_PINS failed" > .lsvenv.failed
    echo "setup: could not install Label Studio; tests/labeling/test_labelstudio_e2e.py is SKIPPED" >&2
    exit 1
fi
