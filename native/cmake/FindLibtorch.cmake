# Locates libtorch (see CMakeLists.txt for the order) and defines the imported target heimdall::libtorch.
# Does not use TorchConfig.cmake: with the CUDA-enabled PyPI wheel it wants a CUDA toolkit, which a
# machine without a GPU lacks, while linking the prebuilt libraries needs none.
set(_tried "")
set(LIBTORCH_ROOT "")

function(_heimdall_torch_ok dir out)
  if(EXISTS "${dir}/include/torch/csrc/api/include/torch/torch.h" AND EXISTS "${dir}/lib")
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

# 1. LIBTORCH / Torch_DIR
foreach(_var LIBTORCH Torch_DIR)
  if(NOT LIBTORCH_ROOT)
    set(_val "${${_var}}")
    if(NOT _val AND DEFINED ENV{${_var}})
      set(_val "$ENV{${_var}}")
    endif()
    if(_val)
      if(_var STREQUAL "Torch_DIR")
        get_filename_component(_val "${_val}/../../.." ABSOLUTE)
      endif()
      _heimdall_torch_ok("${_val}" _ok)
      if(_ok)
        set(LIBTORCH_ROOT "${_val}")
        set(LIBTORCH_SOURCE "${_var}")
      else()
        message(FATAL_ERROR "${_var}=${${_var}}$ENV{${_var}} does not point at a libtorch (expected include/torch/csrc/api/include/torch/torch.h under ${_val}).")
      endif()
    endif()
  endif()
endforeach()

# 2. the torch package of .venv, then of python3 on PATH
if(NOT LIBTORCH_ROOT)
  foreach(_py "${CMAKE_CURRENT_SOURCE_DIR}/.venv/bin/python" python3)
    if(NOT LIBTORCH_ROOT)
      execute_process(COMMAND ${_py} -c "import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
        OUTPUT_VARIABLE _out RESULT_VARIABLE _rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
      list(APPEND _tried "python torch via ${_py}")
      if(_rc EQUAL 0)
        string(REPLACE "\n" ";" _out "${_out}")
        list(GET _out 0 _dir)
        list(GET _out 1 _abi)
        _heimdall_torch_ok("${_dir}" _ok)
        if(_ok)
          set(LIBTORCH_ROOT "${_dir}")
          set(LIBTORCH_SOURCE "python (${_py})")
          set(LIBTORCH_CXX11_ABI ${_abi})
        endif()
      endif()
    endif()
  endforeach()
endif()

# 3. system installs
if(NOT LIBTORCH_ROOT)
  foreach(_dir /usr/local/libtorch /opt/libtorch /usr/lib/libtorch /usr/local)
    _heimdall_torch_ok("${_dir}" _ok)
    if(_ok AND NOT LIBTORCH_ROOT)
      set(LIBTORCH_ROOT "${_dir}")
      set(LIBTORCH_SOURCE "system")
    endif()
  endforeach()
endif()

if(NOT LIBTORCH_ROOT)
  message(FATAL_ERROR
    "heimdall-torch: libtorch was not found. Provide it in one of three ways:\n"
    "  1. set LIBTORCH=/path/to/libtorch (a directory with include/ and lib/), or Torch_DIR=<libtorch>/share/cmake/Torch;\n"
    "  2. install PyTorch into the project's .venv or the active python3: `python3 -m pip install torch==2.15.0`\n"
    "     (or run `bash .ci/setup`, which creates .venv with the pinned torch);\n"
    "  3. install libtorch system-wide under /usr/local/libtorch or /opt/libtorch.\n")
endif()

if(NOT DEFINED LIBTORCH_CXX11_ABI)
  # libtorch 2.7+ is built with the C++11 ABI only; older CPU zips said so in TorchConfig.cmake.
  set(LIBTORCH_CXX11_ABI 1)
  if(EXISTS "${LIBTORCH_ROOT}/share/cmake/Torch/TorchConfig.cmake")
    file(READ "${LIBTORCH_ROOT}/share/cmake/Torch/TorchConfig.cmake" _cfg)
    if(_cfg MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
      set(LIBTORCH_CXX11_ABI 0)
    endif()
  endif()
endif()

set(LIBTORCH_LIB_DIR "${LIBTORCH_ROOT}/lib")
find_library(_torch_lib torch PATHS "${LIBTORCH_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
find_library(_torch_cpu_lib torch_cpu PATHS "${LIBTORCH_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
find_library(_c10_lib c10 PATHS "${LIBTORCH_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
set(LIBTORCH_HAS_CUDA OFF)
if(EXISTS "${LIBTORCH_LIB_DIR}/libtorch_cuda.so")
  set(LIBTORCH_HAS_CUDA ON)
endif()

add_library(heimdall_libtorch INTERFACE)
add_library(heimdall::libtorch ALIAS heimdall_libtorch)
target_include_directories(heimdall_libtorch SYSTEM INTERFACE
  "${LIBTORCH_ROOT}/include" "${LIBTORCH_ROOT}/include/torch/csrc/api/include")
target_compile_definitions(heimdall_libtorch INTERFACE _GLIBCXX_USE_CXX11_ABI=${LIBTORCH_CXX11_ABI})
# libtorch.so pulls in the CUDA backend (libtorch_cuda.so) when the build has one; we reference none of
# its symbols, so keep it from being dropped by --as-needed or CUDA would never register.
target_link_libraries(heimdall_libtorch INTERFACE
  "-Wl,--no-as-needed" "${_torch_lib}" "-Wl,--as-needed" "${_torch_cpu_lib}" "${_c10_lib}" pthread)
# The version: the headers say major.minor.patch; version.py (wheel) or build-version (zip) the full tag
# (2.15.0+cu132, 2.15.0+cpu) and the CUDA version. Recorded next to the addon (heimdall_torch.json) and
# checked by lib/loader/libtorch.ts against the libtorch it finds at run time.
set(LIBTORCH_VERSION "")
foreach(_vh "${LIBTORCH_ROOT}/include/torch/headeronly/version.h" "${LIBTORCH_ROOT}/include/torch/csrc/api/include/torch/version.h")
  if(NOT LIBTORCH_VERSION AND EXISTS "${_vh}")
    file(READ "${_vh}" _vtxt)
    if(_vtxt MATCHES "TORCH_VERSION_MAJOR ([0-9]+)")
      set(_maj ${CMAKE_MATCH_1})
      string(REGEX MATCH "TORCH_VERSION_MINOR ([0-9]+)" _m "${_vtxt}")
      set(_min ${CMAKE_MATCH_1})
      string(REGEX MATCH "TORCH_VERSION_PATCH ([0-9]+)" _m "${_vtxt}")
      set(LIBTORCH_VERSION "${_maj}.${_min}.${CMAKE_MATCH_1}")
    endif()
  endif()
endforeach()
set(LIBTORCH_VERSION_FULL "${LIBTORCH_VERSION}")
set(LIBTORCH_CUDA_VERSION "")
if(EXISTS "${LIBTORCH_ROOT}/version.py")
  file(READ "${LIBTORCH_ROOT}/version.py" _vtxt)
  if(_vtxt MATCHES "__version__ = '([^']+)'")
    set(LIBTORCH_VERSION_FULL "${CMAKE_MATCH_1}")
  endif()
  if(_vtxt MATCHES "cuda[^=\n]*= '([^']+)'")
    set(LIBTORCH_CUDA_VERSION "${CMAKE_MATCH_1}")
  endif()
elseif(EXISTS "${LIBTORCH_ROOT}/build-version")
  file(STRINGS "${LIBTORCH_ROOT}/build-version" LIBTORCH_VERSION_FULL LIMIT_COUNT 1)
endif()

message(STATUS "heimdall-torch: libtorch ${LIBTORCH_VERSION_FULL} from ${LIBTORCH_SOURCE}: ${LIBTORCH_ROOT} (CUDA build: ${LIBTORCH_HAS_CUDA}, CXX11 ABI: ${LIBTORCH_CXX11_ABI})")
