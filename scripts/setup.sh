#!/usr/bin/env bash
# One-time (idempotent) setup on a Debian/Ubuntu machine with a Rust toolchain:
# the wasm32-wasip2 target, ffmpeg, ONNX Runtime from the PyPI wheel, the policy
# components and the release server. Everything comes from crates.io, PyPI and
# Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="${FACEAUTH_ORT_VERSION:-1.31.1}"
RUNTIME_DIR=".runtime/onnxruntime"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if command -v rustup >/dev/null 2>&1; then
  say "Rust target wasm32-wasip2"
  rustup target add wasm32-wasip2 >/dev/null
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  say "Installing python3-pip (Debian package), needed to fetch the ONNX Runtime wheel"
  as_root apt-get update -qq
  as_root apt-get install -y -qq python3-pip >/dev/null
fi

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  say "Installing ffmpeg (Debian package), the selfie-video decoder"
  as_root apt-get update -qq
  as_root apt-get install -y -qq ffmpeg >/dev/null
fi

if ! ls "$RUNTIME_DIR"/libonnxruntime.so.* >/dev/null 2>&1; then
  say "ONNX Runtime $ORT_VERSION from PyPI (onnxruntime wheel)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "onnxruntime==$ORT_VERSION"
  mkdir -p "$RUNTIME_DIR"
  python3 - "$tmp" "$RUNTIME_DIR" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with z.open(name) as src, open(os.path.join(sys.argv[2], base), "wb") as dst:
                dst.write(src.read())
            print("   ", base)
PY
fi

say "Verifying the face models (models/SHA256SUMS)"
(cd models && sha256sum --check --quiet SHA256SUMS)

say "Building the policy components (wasm32-wasip2)"
# Every workspace member that builds a cdylib is a policy component (the shipped
# policies and the hostile ones the tests run).
components=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
packages = json.load(sys.stdin)["packages"]
print(" ".join("-p " + p["name"] for p in packages if any("cdylib" in t["crate_types"] for t in p["targets"])))')
# shellcheck disable=SC2086 # one word per -p flag
cargo build --release --target wasm32-wasip2 $components

say "Building the server"
cargo build --release -p faceauth

say "Ready: target/release/faceauth serve"
