# Sanitizer and fuzzing builds of qnoise's own code (docs/reliability.md). Included before any
# target is made, so the flags reach every target this project defines (libraries, program, tests,
# fuzz targets) and none of the imported ones: libtorch, GoogleTest and zlib stay uninstrumented.
#
#   -DQNOISE_SANITIZE=address,undefined   ASan + UBSan; any undefined behaviour aborts (no recovery)
#   -DQNOISE_FUZZ=ON                      libFuzzer targets in fuzz/ (clang only); qnoise's code gets
#                                         libFuzzer's coverage instrumentation
set(QNOISE_SANITIZE "" CACHE STRING "Sanitizers for qnoise's own targets, e.g. address,undefined")
option(QNOISE_FUZZ "Build the libFuzzer targets in fuzz/ (clang)" OFF)

if(QNOISE_SANITIZE)
  # -g1: line numbers in the sanitizers' stack traces, without full debug information.
  set(sanitize_flags -fsanitize=${QNOISE_SANITIZE} -fno-omit-frame-pointer -g1)
  if(QNOISE_SANITIZE MATCHES "undefined")
    list(APPEND sanitize_flags -fno-sanitize-recover=undefined)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # Instrumented loops are not vectorized; clang says so for each `#pragma omp simd`.
    list(APPEND sanitize_flags -Wno-pass-failed)
  endif()
  add_compile_options(${sanitize_flags})
  add_link_options(${sanitize_flags})
  message(STATUS "qnoise: sanitizers ${QNOISE_SANITIZE}")
endif()

if(QNOISE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "QNOISE_FUZZ needs clang (libFuzzer): -DCMAKE_CXX_COMPILER=clang++")
  endif()
  # Coverage feedback for libFuzzer in every qnoise object; only the fuzz targets link libFuzzer's
  # main (fuzz/CMakeLists.txt). Other programs get the sanitizer runtime's no-op callbacks.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
