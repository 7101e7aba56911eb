# The install test (ctest Install.FindPackage): installs the current build into a prefix of its
# own under WORK_DIR, checks what is there (program, libraries, headers, package files that name
# neither the source nor the build tree, operator library and Python package where they are
# built), then configures, builds and runs tests/install/consumer against that prefix alone.
#   cmake -DSOURCE_DIR=<source> -DBUILD_DIR=<build> -DWORK_DIR=<scratch folder>
#         [-DCXX_COMPILER=<c++>] [-DCOMPILER_LAUNCHER=<ccache>] [-DPYTHON=<python3>]
#         -P tests/install/run_consumer.cmake
cmake_minimum_required(VERSION 3.18)
foreach(variable SOURCE_DIR BUILD_DIR WORK_DIR)
  if(NOT ${variable})
    message(FATAL_ERROR "run_consumer.cmake: -D${variable}=... is required")
  endif()
endforeach()
include(${BUILD_DIR}/qnoise_install_layout.cmake)  # written by cmake/QnoiseInstall.cmake
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# Runs a command in WORK_DIR; stops the test with its output when it fails. Its stdout is left in
# `output`.
function(run what)
  string(TIMESTAMP start %s)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${WORK_DIR}
                  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(TIMESTAMP end %s)
  math(EXPR seconds "${end} - ${start}")
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${what} failed (${result}):\n${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${what}: done in ${seconds} s")
  set(output "${out}" PARENT_SCOPE)
endfunction()

set(failures "")
function(expect_file path)
  if(NOT EXISTS ${prefix}/${path})
    set(failures "${failures}\n  not installed: ${path}" PARENT_SCOPE)
  endif()
endfunction()

# 1. Install: what `cmake --install BUILD_DIR --prefix P` runs, but from WORK_DIR, so that its
# install_manifest.txt goes there: the build tree is only read (and may hold a root-owned manifest
# from `sudo cmake --install build` in scripts/setup.sh).
run("install" ${CMAKE_COMMAND} -DCMAKE_INSTALL_PREFIX=${prefix} -P ${BUILD_DIR}/cmake_install.cmake)

# 2. What is there.
expect_file(${QNOISE_INSTALL_BINDIR}/qnoise)
foreach(layer ${QNOISE_INSTALLED_LAYERS})
  expect_file(${QNOISE_INSTALL_LIBDIR}/lib${layer}.a)
endforeach()
foreach(file qnoiseConfig.cmake qnoiseConfigVersion.cmake qnoiseTargets.cmake)
  expect_file(${QNOISE_INSTALL_CMAKEDIR}/${file})
endforeach()
file(GLOB source_headers RELATIVE ${SOURCE_DIR}/include ${SOURCE_DIR}/include/qnoise/*.h)
foreach(header ${source_headers})
  expect_file(${QNOISE_INSTALL_INCLUDEDIR}/${header})
endforeach()
if(QNOISE_HAS_OPS)
  expect_file(${QNOISE_INSTALL_LIBDIR}/libqnoise_ops.so)
endif()
if(QNOISE_HAS_PYTHON)
  expect_file(${QNOISE_PYTHON_INSTALL_DIR}/qnoise/__init__.py)
  if(QNOISE_HAS_OPS)
    expect_file(${QNOISE_PYTHON_INSTALL_DIR}/qnoise/libqnoise_ops.so)
  endif()
endif()
# The package must not point into the source or build tree (the prefix is inside the latter):
# private include folders and absolute paths would break once the build is gone.
file(GLOB package_files ${prefix}/${QNOISE_INSTALL_CMAKEDIR}/*.cmake)
foreach(file ${package_files})
  file(READ ${file} text)
  foreach(tree ${SOURCE_DIR} ${BUILD_DIR})
    string(FIND "${text}" "${tree}" at)
    if(at GREATER -1)
      set(failures "${failures}\n  ${file} names ${tree}")
    endif()
  endforeach()
endforeach()
if(failures)
  message(FATAL_ERROR "the installed tree is incomplete:${failures}")
endif()
message(STATUS "installed: program, ${QNOISE_INSTALLED_LAYERS}, headers, package files"
               "; operator library: ${QNOISE_HAS_OPS}; Python package: ${QNOISE_HAS_PYTHON}")

run("qnoise --version" ${prefix}/${QNOISE_INSTALL_BINDIR}/qnoise --version)
message(STATUS "installed program: ${output}")

if(QNOISE_HAS_PYTHON AND PYTHON AND EXISTS ${PYTHON})
  set(python_dir ${prefix}/${QNOISE_PYTHON_INSTALL_DIR})
  run("import qnoise" ${CMAKE_COMMAND} -E env PYTHONPATH=${python_dir}
      ${PYTHON} -c "import qnoise\nprint(qnoise.__file__)")  # no ";": ARGN would split there
  string(STRIP "${output}" imported)
  if(NOT imported STREQUAL "${python_dir}/qnoise/__init__.py")
    message(FATAL_ERROR "import qnoise found ${imported}, not the installed package in ${python_dir}")
  endif()
endif()

# 3. A project of someone else's, against the prefix alone.
set(consumer_build ${WORK_DIR}/consumer-build)
set(configure_args -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix}
                   -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(COMPILER_LAUNCHER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER_LAUNCHER=${COMPILER_LAUNCHER})
endif()
run("configure the consumer" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${consumer_build}
    ${configure_args})
file(STRINGS ${consumer_build}/CMakeCache.txt found_dir REGEX "^qnoise_DIR:")
if(NOT found_dir STREQUAL "qnoise_DIR:PATH=${prefix}/${QNOISE_INSTALL_CMAKEDIR}")
  message(FATAL_ERROR "the consumer found another qnoise: ${found_dir}")
endif()
run("build the consumer" ${CMAKE_COMMAND} --build ${consumer_build} -j 2)
run("run the consumer" ${consumer_build}/qnoise_consumer ${WORK_DIR})
message(STATUS "consumer output:\n${output}")
if(NOT output MATCHES "consumer: all checks passed")
  message(FATAL_ERROR "the consumer did not report success")
endif()
