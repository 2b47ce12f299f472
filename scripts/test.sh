#!/usr/bin/env bash
# Runs every test: setup (idempotent), then the whole workspace's tests in release
# mode (image processing and inference are too slow unoptimised).
# Real-data evaluations read ../shared (FACEAUTH_SHARED_DIR) and skip, saying so, without it.
# The PostgreSQL store test uses 127.0.0.1:5432/test (FACEAUTH_TEST_POSTGRES_URL, or =skip).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --workspace "$@"
