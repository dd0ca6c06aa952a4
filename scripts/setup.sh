#!/usr/bin/env bash
# Install skpeal and everything its tests, examples and demo need into ./.venv.
# Idempotent: a second run only checks. Used by scripts/test.sh, scripts/demo.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package with the Fashion-MNIST files (the demo's and the tests' shipped data).
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
        echo "setup: installing the Debian package dataset-fashion-mnist" >&2
        $SUDO apt-get update -qq >/dev/null || true
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
            || echo "setup: could not install dataset-fashion-mnist; tests that need it are skipped" >&2
    fi
fi

# Debian's chromium: the real browser of the labelling app's tests (driven by playwright
# through executable_path; `playwright install` is never run).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    echo "setup: installing the Debian package chromium" >&2
    $SUDO apt-get update -qq >/dev/null || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || echo "setup: could not install chromium; browser tests are skipped" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.skpeal-installed
want=$(cat pyproject.toml constraints/ci.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    # constraints/ci.txt pins the torch/torchvision pair that works on these machines, and
    # every other package at the version of a run that passed
    .venv/bin/python -m pip install -q --disable-pip-version-check \
        -c constraints/ci.txt -e ".[test,modal,plot,offline,dev,docs,label,browser,ray]"
    echo "$want" > "$stamp"
fi
