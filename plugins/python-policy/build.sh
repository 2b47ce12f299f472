#!/usr/bin/env bash
# Builds the Python policy into a WebAssembly component:
#   plugins/python-policy/build.sh   ->   target/python-policy/python_policy.wasm
# Creates a virtual environment under target/python-policy/venv, installs a pinned
# componentize-py from PyPI, generates the bindings of wit/policy.wit (for the native
# tests and editors), runs the native tests (test_app.py), then componentizes app.py.
# Idempotent: nothing is redone when app.py, test_app.py, this script and the WIT have
# not changed since the last build (FORCE=1 rebuilds anyway).
set -euo pipefail
cd "$(dirname "$0")/../.."

# 0.25.1 makes components of the component model wasmtime 48 runs (checked with the
# faceauth host); its wasm CPython is 3.14.
COMPONENTIZE_PY_VERSION=0.25.1
SRC=plugins/python-policy
OUT=target/python-policy
VENV=$OUT/venv
WASM=$OUT/python_policy.wasm
PYTHON=${PYTHON:-python3}

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

mkdir -p "$OUT"

# What the component is made of: if its fingerprint has not changed, we are done.
fingerprint=$(cat "$SRC/app.py" "$SRC/test_app.py" "$SRC/build.sh" wit/*.wit <(echo "componentize-py $COMPONENTIZE_PY_VERSION") | sha256sum | cut -d' ' -f1)
if [ "${FORCE:-0}" != 1 ] && [ -f "$WASM" ] && [ "$(cat "$OUT/fingerprint" 2>/dev/null)" = "$fingerprint" ]; then
  echo "$WASM is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/pip" ]; then  # a venv made without python3-venv has no pip
  step "Creating $VENV"
  if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's Python needs python3-venv for `python3 -m venv`.
    step "Installing python3-venv (Debian package)"
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi
if [ "$("$VENV/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
  step "Installing componentize-py $COMPONENTIZE_PY_VERSION (PyPI)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

step "Generating the bindings of wit/policy.wit into $OUT/bindings"
rm -rf "$OUT/bindings"
"$VENV/bin/componentize-py" --quiet -d wit -w policy bindings "$OUT/bindings"

step "Running the native tests ($SRC/test_app.py)"
# No __pycache__ in the source folder: componentize-py would bundle it.
if ! tests=$(PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$OUT/bindings:$SRC" "$VENV/bin/python" -m unittest -v test_app 2>&1); then
  echo "$tests"
  exit 1
fi
echo "$tests" | tail -n 3 | head -n 1

step "Building $WASM"
# Only app.py goes in: a staging folder keeps the tests and any stray file out.
rm -rf "$OUT/stage" && mkdir -p "$OUT/stage" && cp "$SRC/app.py" "$OUT/stage/"
"$VENV/bin/componentize-py" --quiet -d wit -w policy componentize -p "$OUT/stage" app -o "$WASM.tmp"
mv "$WASM.tmp" "$WASM"
echo "$fingerprint" >"$OUT/fingerprint"
echo "$WASM: $(stat -c %s "$WASM") bytes"
