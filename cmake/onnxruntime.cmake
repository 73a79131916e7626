# ONNX Runtime discovery, in one place. Defines:
#   ONNXRUNTIME_INCLUDE_DIR  ORT's official C/C++ headers
#   ONNXRUNTIME_LIBRARY_DIR  a directory holding libonnxruntime.so*, baked in as the C++ programs'
#                            default (ringflow dlopens the library at run time, so nothing links it)
#
# Headers: ONNXRUNTIME_ROOT (CMake or environment variable), then the system, then the ringflow
# cache, where scripts/install_ort_headers.sh puts Debian's headers, running it if needed.
# Library: ONNXRUNTIME_ROOT/lib, else the installed onnxruntime wheel.

if(NOT ONNXRUNTIME_ROOT AND DEFINED ENV{ONNXRUNTIME_ROOT})
  set(ONNXRUNTIME_ROOT "$ENV{ONNXRUNTIME_ROOT}")
endif()

if(DEFINED ENV{RINGFLOW_CACHE_DIR} AND NOT "$ENV{RINGFLOW_CACHE_DIR}" STREQUAL "")
  set(_ringflow_cache "$ENV{RINGFLOW_CACHE_DIR}")
elseif(DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
  set(_ringflow_cache "$ENV{XDG_CACHE_HOME}/ringflow")
else()
  set(_ringflow_cache "$ENV{HOME}/.cache/ringflow")
endif()

set(_ort_header_hints)
if(ONNXRUNTIME_ROOT)
  list(APPEND _ort_header_hints "${ONNXRUNTIME_ROOT}/include" "${ONNXRUNTIME_ROOT}/include/onnxruntime")
endif()
find_path(ONNXRUNTIME_INCLUDE_DIR onnxruntime_cxx_api.h
  HINTS ${_ort_header_hints}
  PATHS /usr/include/onnxruntime /usr/local/include/onnxruntime
        "${_ringflow_cache}/onnxruntime-headers/include"
  NO_CACHE)

if(NOT ONNXRUNTIME_INCLUDE_DIR AND NOT ONNXRUNTIME_ROOT)
  message(STATUS "ONNX Runtime headers not found; fetching them with scripts/install_ort_headers.sh")
  execute_process(
    COMMAND bash "${CMAKE_CURRENT_LIST_DIR}/../scripts/install_ort_headers.sh"
            "${_ringflow_cache}/onnxruntime-headers"
    RESULT_VARIABLE _ort_script_result
    OUTPUT_VARIABLE _ort_script_output
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(_ort_script_result EQUAL 0)
    string(REGEX REPLACE ".*\n" "" ONNXRUNTIME_INCLUDE_DIR "${_ort_script_output}")
  endif()
endif()

if(NOT ONNXRUNTIME_INCLUDE_DIR OR NOT EXISTS "${ONNXRUNTIME_INCLUDE_DIR}/onnxruntime_cxx_api.h")
  message(FATAL_ERROR
    "ONNX Runtime C/C++ headers (onnxruntime_cxx_api.h) not found.\n"
    "Set ONNXRUNTIME_ROOT to an ONNX Runtime release directory (with include/), "
    "or run scripts/install_ort_headers.sh.")
endif()
message(STATUS "ONNX Runtime headers: ${ONNXRUNTIME_INCLUDE_DIR}")

if(ONNXRUNTIME_ROOT AND EXISTS "${ONNXRUNTIME_ROOT}/lib")
  set(ONNXRUNTIME_LIBRARY_DIR "${ONNXRUNTIME_ROOT}/lib")
else()
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND "${Python3_EXECUTABLE}" -c
              "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"
      RESULT_VARIABLE _ort_py_result
      OUTPUT_VARIABLE ONNXRUNTIME_LIBRARY_DIR
      ERROR_QUIET
      OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT _ort_py_result EQUAL 0)
      unset(ONNXRUNTIME_LIBRARY_DIR)
    endif()
  endif()
endif()
if(ONNXRUNTIME_LIBRARY_DIR)
  message(STATUS "ONNX Runtime library directory (run-time default): ${ONNXRUNTIME_LIBRARY_DIR}")
else()
  message(STATUS "ONNX Runtime library not found at build time; programs will use "
                 "RINGFLOW_ONNXRUNTIME_LIB or the system's libonnxruntime.so.1")
endif()
