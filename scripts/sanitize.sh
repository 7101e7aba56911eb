#!/usr/bin/env bash
# Builds qnoise with AddressSanitizer and UndefinedBehaviorSanitizer (clang; build-sanitize/) and
# runs, under them, the tests of the layers that read files and run kernels:
#   qnoise_core_tests     quantizers, noise, kernels through them, safetensors and .qnz files
#   qnoise_runtime_tests  packed layers and their kernels, .qnz files loaded into them
#   qnoise_data_tests     IDX (plain, gzip), PGM, TSV pairs, WikiText, vocabularies, KJV
#   kernel_check          every SIMD kernel against its reference (bench/kernel_check.cpp)
# Any sanitizer report fails the test that triggered it. The training and command-line tests
# (qnoise_train_tests, Python) are not run: they take long even uninstrumented.
#
#   scripts/sanitize.sh            (QNOISE_SANITIZE_BUILD: build folder, build-sanitize)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/sanitizer_build.sh
case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exit 0 ;; esac

programs=(qnoise_core_tests qnoise_runtime_tests qnoise_data_tests)
configure_sanitized_build
cmake --build "$sanitize_build_dir" -j "$(nproc)" --target "${programs[@]}" kernel_check
# Each test suite is a ctest test labelled with its program (tests/CMakeLists.txt).
labels=$(IFS='|'; echo "^(${programs[*]})\$")
ctest --test-dir "$sanitize_build_dir" --output-on-failure -j "$(nproc)" --timeout 600 -L "$labels"
ctest --test-dir "$sanitize_build_dir" --output-on-failure --timeout 600 -R '^KernelCheck\.'
