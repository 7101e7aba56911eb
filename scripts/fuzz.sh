#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) and runs each for a while from its seed
# corpus (fuzz/corpus). Exits non-zero when a target finds a crash, a sanitizer report, a hang, a
# memory blow-up or an exception other than qnoise::Error; the input is kept as
# <build>/fuzz/findings/<target>-crash-<sha1> (or -timeout-, -oom-). Reproduce with
# `<build>/fuzz/<target>_fuzzer FILE`.
#
#   scripts/fuzz.sh [--seconds N] [--no-build] [TARGET...]   (default: every target, 20 s each)
#
# New inputs a run finds go to <build>/fuzz/corpus/<target>/, so later runs start from them.
# Environment: QNOISE_SANITIZE_BUILD (build folder, build-sanitize), FUZZ_FLAGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/sanitizer_build.sh

seconds=20
build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
if [ ${#targets[@]} -eq 0 ]; then
  for source in fuzz/*_fuzzer.cpp; do targets+=("$(basename "$source" _fuzzer.cpp)"); done
fi

if [ "$build" = 1 ]; then
  configure_sanitized_build
  cmake --build "$sanitize_build_dir" -j "$(nproc)" --target "${targets[@]/%/_fuzzer}"
fi

# Seed corpora: a target's own folder; the readers of .qnz files also start from the .qnz seeds.
seeds_of() {
  case "$1" in
    safetensors) echo fuzz/corpus/safetensors fuzz/corpus/qnz ;;
    qnz_model) echo fuzz/corpus/qnz ;;
    *) echo "fuzz/corpus/$1" ;;
  esac
}

# Input files go to a RAM disk when there is one: the targets reading paths run 2-3x faster.
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=${TMPDIR:-/dev/shm}
out="$sanitize_build_dir/fuzz"
mkdir -p "$out/findings"
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$out/corpus/$target"
  echo "fuzz.sh: $target for $seconds s"
  # -rss_limit_mb: a reader that allocates far beyond its input is a finding; -timeout: so is one
  # that spends seconds on one small input.
  if ! "$out/${target}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
       -print_final_stats=1 -artifact_prefix="$out/findings/$target-" ${FUZZ_FLAGS:-} \
       "$out/corpus/$target" $(seeds_of "$target") >"$out/$target.log" 2>&1; then
    failed+=("$target")
    tail -n 60 "$out/$target.log"
  fi
  grep '^Done' "$out/$target.log" || true
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]}: see $out/findings/ and $out/<target>.log" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, no findings"
