# What `cmake --install build [--prefix P]` puts where (P defaults to /usr/local):
#
#   bin/qnoise                               the program
#   <libdir>/libqnoise_<layer>.a             every library layer (cmake/QnoiseLayers.cmake)
#   <libdir>/libqnoise_ops.so                the operator library, when it is built
#   include/qnoise/*.h                       the public headers
#   <libdir>/cmake/qnoise/                   qnoiseConfig.cmake, its version file and the exported
#                                            targets qnoise::kernels, qnoise::core, ...,
#                                            qnoise::ops, for find_package(qnoise)
#   QNOISE_PYTHON_INSTALL_DIR/qnoise/        the Python package (python/qnoise/*.py), with a copy
#                                            of libqnoise_ops.so beside it
#
# Included at the end of the top-level CMakeLists.txt, so every target exists by now.
include(CMakePackageConfigHelpers)

# The Python package goes where Debian's interpreter looks: with the prefix /usr/local,
# /usr/local/lib/python3.<minor>/dist-packages is on /usr/bin/python3's sys.path.
set(qnoise_python_default "lib/python3/dist-packages")
if(EXISTS /usr/bin/python3)
  execute_process(COMMAND /usr/bin/python3 -c "import sys; print(sys.version_info[1])"
                  OUTPUT_VARIABLE qnoise_python_minor OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE qnoise_python_result)
  if(qnoise_python_result EQUAL 0 AND qnoise_python_minor MATCHES "^[0-9]+$")
    set(qnoise_python_default "lib/python3.${qnoise_python_minor}/dist-packages")
  endif()
endif()
set(QNOISE_PYTHON_INSTALL_DIR "${qnoise_python_default}" CACHE STRING
    "Where the Python package qnoise is installed (relative: under the install prefix)")

set(QNOISE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/qnoise)
get_property(qnoise_layers GLOBAL PROPERTY QNOISE_LAYERS)

install(TARGETS ${qnoise_layers} EXPORT qnoiseTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/qnoise DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")

# The installed program and operator library find libtorch where they were linked against it
# (nothing is added when that is a system directory, as with Debian's libtorch-dev).
set_target_properties(qnoise_cli PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS qnoise_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(qnoise_has_ops OFF)
if(TARGET qnoise_ops)
  set(qnoise_has_ops ON)
  set_target_properties(qnoise_ops PROPERTIES EXPORT_NAME ops INSTALL_RPATH_USE_LINK_PATH ON)
  install(TARGETS qnoise_ops EXPORT qnoiseTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()

set(qnoise_has_python OFF)
if(EXISTS ${PROJECT_SOURCE_DIR}/python/qnoise)
  set(qnoise_has_python ON)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/python/qnoise DESTINATION ${QNOISE_PYTHON_INSTALL_DIR}
          FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
  if(qnoise_has_ops)
    # The package loads the operator library from its own folder (libqnoise_ops.so); installed as
    # a target, not copied as a file, so that its build tree RPATH is replaced here too.
    install(TARGETS qnoise_ops LIBRARY DESTINATION ${QNOISE_PYTHON_INSTALL_DIR}/qnoise)
  endif()
endif()

install(EXPORT qnoiseTargets NAMESPACE qnoise:: FILE qnoiseTargets.cmake
        DESTINATION ${QNOISE_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/qnoiseConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/qnoiseConfig.cmake
                              INSTALL_DESTINATION ${QNOISE_INSTALL_CMAKEDIR})
# 0.x: a new minor version may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/qnoiseConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/qnoiseConfig.cmake ${PROJECT_BINARY_DIR}/qnoiseConfigVersion.cmake
        DESTINATION ${QNOISE_INSTALL_CMAKEDIR})

# The layout, for the install test (tests/install/run_consumer.cmake).
file(WRITE ${PROJECT_BINARY_DIR}/qnoise_install_layout.cmake
"set(QNOISE_INSTALL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
set(QNOISE_INSTALL_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
set(QNOISE_INSTALL_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
set(QNOISE_INSTALL_CMAKEDIR \"${QNOISE_INSTALL_CMAKEDIR}\")
set(QNOISE_PYTHON_INSTALL_DIR \"${QNOISE_PYTHON_INSTALL_DIR}\")
set(QNOISE_INSTALLED_LAYERS \"${qnoise_layers}\")
set(QNOISE_HAS_OPS ${qnoise_has_ops})
set(QNOISE_HAS_PYTHON ${qnoise_has_python})
")
