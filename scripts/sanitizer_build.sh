# Sourced by scripts/sanitize.sh and scripts/fuzz.sh: the sanitized build they share and the
# sanitizers' run-time options (docs/reliability.md).
#
# The build: clang, ASan + UBSan on qnoise's own code (QNOISE_SANITIZE), libFuzzer's coverage
# instrumentation and the fuzz targets (QNOISE_FUZZ). One build serves the tests and the fuzzers.
# libtorch, GoogleTest and zlib are Debian's, not instrumented.
sanitize_build_dir=${QNOISE_SANITIZE_BUILD:-build-sanitize}

configure_sanitized_build() {
  cmake -S . -B "$sanitize_build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
    -DQNOISE_SANITIZE=address,undefined -DQNOISE_FUZZ=ON >/dev/null
}

# ASan's defaults, LeakSanitizer included (libtorch leaves nothing it reports at exit); UBSan's
# reports are fatal (-fno-sanitize-recover) and come with a stack trace.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
