# The library layers (DESIGN.md section 3): each a static library of the sources in its folders
# under src/ and the public headers it owns in include/qnoise/, linking only the layers below it.
# Every layer is written to a manifest that tests/check_layers.cmake reads, so a file that
# includes a header of a layer above its own fails the test suite (and, since a layer links only
# those below, usually the link too).
#
#   qnoise_layer(<name> DIRS <folders under src/> HEADERS <files in include/qnoise/>
#                [DEPENDS <layers>] [TORCH_FREE])
function(qnoise_layer name)
  cmake_parse_arguments(LAYER "TORCH_FREE" "" "DIRS;HEADERS;DEPENDS;SOURCES" ${ARGN})
  set(sources ${LAYER_SOURCES})
  foreach(dir ${LAYER_DIRS})
    file(GLOB dir_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${dir}/*.cpp)
    # SIMD kernels are compiled with their own flags (qnoise_simd_objects).
    list(FILTER dir_sources EXCLUDE REGEX "_avx(2|512)\\.cpp$")
    list(APPEND sources ${dir_sources})
  endforeach()
  # Programs' own files, linked into executables only.
  list(FILTER sources EXCLUDE REGEX "/(main|passive_openmp_environment)\\.cpp$")
  set(headers "")
  foreach(header ${LAYER_HEADERS})
    list(APPEND headers ${PROJECT_SOURCE_DIR}/include/qnoise/${header})
  endforeach()
  add_library(${name} STATIC ${sources} ${headers})
  # Installed, the headers are under <prefix>/include (cmake/QnoiseInstall.cmake); src/ stays private.
  target_include_directories(${name}
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_features(${name} PUBLIC cxx_std_17)
  target_compile_options(${name} PRIVATE -Wall -Wextra)
  if(LAYER_DEPENDS)
    target_link_libraries(${name} PUBLIC ${LAYER_DEPENDS})
  endif()
  list(TRANSFORM LAYER_DIRS PREPEND "src/" OUTPUT_VARIABLE source_dirs)
  string(REPLACE ";" "," dirs "${source_dirs}")
  string(REPLACE ";" "," header_list "${LAYER_HEADERS}")
  string(REPLACE ";" "," deps "${LAYER_DEPENDS}")
  set(torch_free 0)
  if(LAYER_TORCH_FREE)
    set(torch_free 1)
  else()
    # Every source here includes libtorch's headers: compiled in batches (QNOISE_UNITY_BUILD).
    set_target_properties(${name} PROPERTIES UNITY_BUILD ${QNOISE_UNITY_BUILD} UNITY_BUILD_BATCH_SIZE 8)
  endif()
  set_property(GLOBAL APPEND PROPERTY QNOISE_LAYER_MANIFEST "${name}|${dirs}|${header_list}|${deps}|${torch_free}")
  # Installed and exported as qnoise::<name without qnoise_> (cmake/QnoiseInstall.cmake).
  string(REGEX REPLACE "^qnoise_" "" export_name ${name})
  set_target_properties(${name} PROPERTIES EXPORT_NAME ${export_name})
  set_property(GLOBAL APPEND PROPERTY QNOISE_LAYERS ${name})
endfunction()

# A folder of tests (or benchmarks) that may include what `deps` reach, checked like a layer.
#   qnoise_checked_folders(<name> DIRS <folders under the source root> DEPENDS <layers>)
function(qnoise_checked_folders name)
  cmake_parse_arguments(FOLDERS "" "" "DIRS;DEPENDS" ${ARGN})
  string(REPLACE ";" "," dirs "${FOLDERS_DIRS}")
  string(REPLACE ";" "," deps "${FOLDERS_DEPENDS}")
  set_property(GLOBAL APPEND PROPERTY QNOISE_LAYER_MANIFEST "${name}|${dirs}||${deps}|0")
endfunction()

# Writes the manifest of every layer and checked folder declared so far.
function(qnoise_write_layer_manifest path)
  get_property(lines GLOBAL PROPERTY QNOISE_LAYER_MANIFEST)
  string(REPLACE ";" "\n" text "${lines}")
  file(WRITE ${path} "${text}\n")
endfunction()
