# Finds what muse builds against and makes the result self-contained: LLVM and
# MLIR are linked from Debian's static archives, yaml-cpp statically, NVRTC
# dynamically (rpath to the CUDA toolkit), and the CUDA driver is opened at run
# time, so binaries run on a machine with only glibc, libstdc++, libnvrtc and
# (for kernels) libcuda.

find_package(MLIR REQUIRED CONFIG
  HINTS /usr/lib/llvm-19/lib/cmake/mlir /usr/lib/llvm-19)
if(NOT LLVM_VERSION_MAJOR EQUAL 19)
  message(FATAL_ERROR "muse needs LLVM/MLIR 19, found ${LLVM_PACKAGE_VERSION} (${MLIR_DIR}); run scripts/setup.sh")
endif()
message(STATUS "MLIR ${LLVM_PACKAGE_VERSION} from ${MLIR_DIR}")

list(APPEND CMAKE_MODULE_PATH "${MLIR_CMAKE_DIR}" "${LLVM_CMAKE_DIR}")
set(LLVM_RUNTIME_OUTPUT_INTDIR ${CMAKE_BINARY_DIR}/bin)
set(LLVM_LIBRARY_OUTPUT_INTDIR ${CMAKE_BINARY_DIR}/lib)
set(MLIR_BINARY_DIR ${CMAKE_BINARY_DIR})
include(TableGen)
include(AddLLVM)
include(AddMLIR)
include(HandleLLVMOptions)

include_directories(SYSTEM ${LLVM_INCLUDE_DIRS} ${MLIR_INCLUDE_DIRS})
add_definitions(${LLVM_DEFINITIONS})
# LLVM is built without RTTI and exceptions; our code that touches it follows.
# yaml-cpp reports errors by exception, so lib/Spec enables them locally.

# Debian's MLIR exports link every MLIR library against the imported target
# `LLVM` (the 129 MB libLLVM.so with its own dependencies). Point it at the
# static archives instead, so only what is used is linked in.
if(TARGET LLVM)
  find_library(MUSE_LLVM_SUPPORT_A libLLVMSupport.a PATHS ${LLVM_LIBRARY_DIR} NO_DEFAULT_PATH REQUIRED)
  find_library(MUSE_LLVM_DEMANGLE_A libLLVMDemangle.a PATHS ${LLVM_LIBRARY_DIR} NO_DEFAULT_PATH REQUIRED)
  set_target_properties(LLVM PROPERTIES
    IMPORTED_LOCATION "${MUSE_LLVM_SUPPORT_A}"
    IMPORTED_LOCATION_RELEASE "${MUSE_LLVM_SUPPORT_A}"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_LINK_LIBRARIES "${MUSE_LLVM_SUPPORT_A};${MUSE_LLVM_DEMANGLE_A};pthread;dl;m")
  get_target_property(_muse_cfgs LLVM IMPORTED_CONFIGURATIONS)
  foreach(_cfg IN LISTS _muse_cfgs)
    set_target_properties(LLVM PROPERTIES IMPORTED_LOCATION_${_cfg} "${MUSE_LLVM_SUPPORT_A}")
  endforeach()
endif()

# yaml-cpp, static.
find_path(MUSE_YAMLCPP_INCLUDE yaml-cpp/yaml.h REQUIRED)
find_library(MUSE_YAMLCPP_A libyaml-cpp.a REQUIRED)
add_library(muse_yamlcpp STATIC IMPORTED)
set_target_properties(muse_yamlcpp PROPERTIES
  IMPORTED_LOCATION "${MUSE_YAMLCPP_A}"
  INTERFACE_INCLUDE_DIRECTORIES "${MUSE_YAMLCPP_INCLUDE}")

# CUDA: NVRTC (linked, rpath) and the driver API header (the driver itself is
# dlopen'ed at run time, never linked).
set(MUSE_CUDA_HOME "$ENV{CUDA_HOME}")
if(NOT MUSE_CUDA_HOME)
  set(MUSE_CUDA_HOME /usr/local/cuda)
endif()
find_path(MUSE_CUDA_INCLUDE nvrtc.h PATHS ${MUSE_CUDA_HOME}/include NO_DEFAULT_PATH REQUIRED)
find_library(MUSE_NVRTC_LIB nvrtc PATHS ${MUSE_CUDA_HOME}/lib64 NO_DEFAULT_PATH REQUIRED)
get_filename_component(MUSE_CUDA_LIBDIR "${MUSE_NVRTC_LIB}" DIRECTORY)
add_library(muse_nvrtc SHARED IMPORTED)
set_target_properties(muse_nvrtc PROPERTIES
  IMPORTED_LOCATION "${MUSE_NVRTC_LIB}"
  INTERFACE_INCLUDE_DIRECTORIES "${MUSE_CUDA_INCLUDE}")
set(CMAKE_BUILD_RPATH "${MUSE_CUDA_LIBDIR}")
set(CMAKE_INSTALL_RPATH "${MUSE_CUDA_LIBDIR};\$ORIGIN/../lib")
message(STATUS "CUDA toolkit: ${MUSE_CUDA_HOME} (NVRTC ${MUSE_NVRTC_LIB})")

if(MUSE_BUILD_TESTS)
  find_package(GTest REQUIRED)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  set(MUSE_LIT "${LLVM_TOOLS_BINARY_DIR}/../build/utils/lit/lit.py")
  if(NOT EXISTS "${MUSE_LIT}")
    set(MUSE_LIT /usr/lib/llvm-19/build/utils/lit/lit.py)
  endif()
endif()
