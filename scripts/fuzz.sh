#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the parsers of untrusted input:
# every target of fuzz/ for SECONDS each (default 30). See fuzz/README.md.
#
#   scripts/fuzz.sh [SECONDS]
#
# The toolchain is the pinned stable rustc: cargo fuzz's AddressSanitizer flag
# (-Zsanitizer=address) is a nightly option, which RUSTC_BOOTSTRAP=1 lets it accept.
# FUZZ_SANITIZER=none builds without ASan (no nightly option at all, faster, but only
# panics and aborts are caught).
#
# FUZZ_TARGET_DIR: where the instrumented build goes (default ~/.cache/faceauth/fuzz-target).
#
# The seeds in fuzz/corpus/<target> are only read; what the fuzzer learns goes to
# fuzz/target/corpus/<target>, kept between runs and not committed. A crash (panic,
# ASan report, out-of-memory or an input slower than 20 s) ends that target's run with
# the input in fuzz/artifacts/<target>/; the other targets still run, and the script
# exits with status 1 naming the targets that crashed.
set -euo pipefail
seconds="${1:-30}"
sanitizer="${FUZZ_SANITIZER:-address}"
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  printf '\033[1m==> %s\033[0m\n' "Installing cargo-fuzz (crates.io)"
  cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
# The instrumented build of the whole host takes about 20 minutes cold on 2 cores:
# it is kept outside the checkout, so that CI (a fresh clone each time) rebuilds
# only what changed.
target_dir="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/faceauth/fuzz-target}"
mkdir -p "$target_dir"
printf '\033[1m==> %s\033[0m\n' "Building the fuzz targets (sanitizer: $sanitizer, into $target_dir)"
cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"
crashed=()
for target in $(cargo fuzz list); do
  printf '\033[1m==> %s\033[0m\n' "Fuzzing $target for ${seconds} s"
  mkdir -p "target/corpus/$target"
  cargo fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=20 -print_final_stats=1 || crashed+=("$target")
done
if [ "${#crashed[@]}" -gt 0 ]; then
  printf '\033[1;31m==> %s\033[0m\n' "Crashed: ${crashed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
printf '\033[1m==> %s\033[0m\n' "No crash in $seconds s per target"
