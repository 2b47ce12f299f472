#!/usr/bin/env bash
# Builds the JavaScript policy into a WebAssembly component:
#   plugins/js-policy/build.sh   ->   target/js-policy/js_policy.wasm
# Installs a pinned componentize-js from npm into target/js-policy/node_modules, runs
# the native tests (test_policy.mjs, node:test), then componentizes policy.mjs.
# Idempotent: nothing is redone when policy.mjs, test_policy.mjs, this script and the
# WIT have not changed since the last build (FORCE=1 rebuilds anyway).
set -euo pipefail
cd "$(dirname "$0")/../.."

# 0.23.0 (StarlingMonkey/SpiderMonkey) makes components wasmtime 48 runs (checked with
# the faceauth host).
COMPONENTIZE_JS_VERSION=0.23.0
SRC=plugins/js-policy
OUT=target/js-policy
WASM=$OUT/js_policy.wasm

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

mkdir -p "$OUT"

fingerprint=$(cat "$SRC/policy.mjs" "$SRC/test_policy.mjs" "$SRC/build.sh" wit/*.wit | sha256sum | cut -d' ' -f1)
if [ "${FORCE:-0}" != 1 ] && [ -f "$WASM" ] && [ "$(cat "$OUT/fingerprint" 2>/dev/null)" = "$fingerprint" ]; then
  echo "$WASM is up to date"
  exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  step "Installing nodejs and npm (Debian packages)"
  as_root apt-get update -qq && as_root apt-get install -y -qq nodejs npm >/dev/null
fi
installed=$(node -p "require('./$OUT/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$COMPONENTIZE_JS_VERSION" ]; then
  step "Installing componentize-js $COMPONENTIZE_JS_VERSION (npm) into $OUT"
  [ -f "$OUT/package.json" ] || echo '{"name": "js-policy-build", "private": true}' >"$OUT/package.json"
  npm install --prefix "$OUT" --no-audit --no-fund --silent --save-exact \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
fi

step "Running the native tests ($SRC/test_policy.mjs)"
if ! tests=$(node --test "$SRC/test_policy.mjs" 2>&1); then
  echo "$tests"
  exit 1
fi
echo "$tests" | grep -E '^# (pass|fail)' | tr '\n' ' ' && echo

step "Building $WASM"
# Every WASI feature off: a policy needs no stdio, clocks, randomness or HTTP (the host
# gives it empty ones anyway).
"$OUT/node_modules/.bin/componentize-js" "$SRC/policy.mjs" --wit wit --world-name policy \
  --disable stdio random clocks http fetch-event -o "$WASM.tmp" >/dev/null
mv "$WASM.tmp" "$WASM"
echo "$fingerprint" >"$OUT/fingerprint"
echo "$WASM: $(stat -c %s "$WASM") bytes"
