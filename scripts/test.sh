#!/usr/bin/env bash
# Runs every test: setup (idempotent), then the whole workspace's tests in release
# mode (image processing and inference are too slow unoptimised).
# Real-data evaluations read ../shared (FACEAUTH_SHARED_DIR) and skip, saying so, without it.
# The PostgreSQL store test uses 127.0.0.1:5432/test (FACEAUTH_TEST_POSTGRES_URL, or =skip).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The stats page is tested in a real headless browser: Debian's chromium.
if ! command -v chromium >/dev/null 2>&1; then
  printf '\033[1m==> %s\033[0m\n' "Installing chromium (Debian package), for the stats page test"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi
cargo test --release --workspace "$@"
