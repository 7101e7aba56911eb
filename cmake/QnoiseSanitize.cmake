# Sanitizer builds of qnoise's own code (docs/reliability.md). Included before any target is
# made, so the flags reach every target this project defines (libraries, program, tests) and none
# of the imported ones: libtorch, GoogleTest and zlib stay uninstrumented.
#
#   -DQNOISE_SANITIZE=address,undefined   ASan + UBSan; any undefined behaviour aborts (no recovery)
set(QNOISE_SANITIZE "" CACHE STRING "Sanitizers for qnoise's own targets, e.g. address,undefined")

if(QNOISE_SANITIZE)
  # -g1: line numbers in the sanitizers' stack traces, without full debug information.
  set(sanitize_flags -fsanitize=${QNOISE_SANITIZE} -fno-omit-frame-pointer -g1)
  if(QNOISE_SANITIZE MATCHES "undefined")
    list(APPEND sanitize_flags -fno-sanitize-recover=undefined)
  endif()
  add_compile_options(${sanitize_flags})
  add_link_options(${sanitize_flags})
  message(STATUS "qnoise: sanitizers ${QNOISE_SANITIZE}")
endif()

