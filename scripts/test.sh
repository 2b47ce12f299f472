#!/usr/bin/env bash
# Runs every test: setup (idempotent), then the whole workspace's tests in release
# mode (image processing and inference are too slow unoptimised).
# Real-data evaluations read ../shared (FACEAUTH_SHARED_DIR) and skip, saying so, without it.
# The PostgreSQL store test uses 127.0.0.1:5432/test (FACEAUTH_TEST_POSTGRES_URL, or =skip).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The stats page and the demo page (with a fake camera) are tested in a real headless
# browser: Debian's chromium.
if ! command -v chromium >/dev/null 2>&1; then
  printf '\033[1m==> %s\033[0m\n' "Installing chromium (Debian package), for the stats and demo page tests"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi
# The example clients (examples/clients/) are run against the server: Python with
# requests, and Node.js (18 or later: its built-in fetch; Debian's nodejs is).
if ! python3 -c 'import requests' >/dev/null 2>&1; then
  printf '\033[1m==> %s\033[0m\n' "Installing requests (PyPI), for the Python example client test"
  # A Debian system Python refuses pip installs (PEP 668): Debian's python3-requests then.
  if ! python3 -m pip install --quiet --disable-pip-version-check -r examples/clients/python/requirements.txt; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq python3-requests >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq python3-requests >/dev/null; fi
  fi
fi
# The API contract (host/tests/openapi.rs) is fuzzed against the live server by
# schemathesis (PyPI): the one on PATH, else a virtual environment under target/
# (no system-wide pip install: a Debian system Python refuses them, PEP 668).
if ! command -v schemathesis >/dev/null 2>&1 && [ ! -x target/schemathesis/bin/schemathesis ]; then
  printf '\033[1m==> %s\033[0m\n' "Installing schemathesis (PyPI, into target/schemathesis), for the API contract test"
  if ! python3 -m venv target/schemathesis >/dev/null 2>&1; then
    # Debian's Python needs python3-venv for `python3 -m venv`.
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null; fi
    python3 -m venv target/schemathesis
  fi
  target/schemathesis/bin/python -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
if ! command -v node >/dev/null 2>&1; then
  printf '\033[1m==> %s\033[0m\n' "Installing nodejs (Debian package), for the JavaScript example client test"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq nodejs >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq nodejs >/dev/null; fi
fi
# A policy written in Python (componentize-py from PyPI, into target/python-policy),
# run as a variant by host/tests/python_policy.rs; idempotent, 20 ms when built.
plugins/python-policy/build.sh
cargo test --release --workspace "$@"
