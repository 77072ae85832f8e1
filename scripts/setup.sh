#!/usr/bin/env bash
# Installs what muse needs to build and test on a Debian 12 machine (the build machine and CI):
# LLVM/MLIR 19 with their static libraries, yaml-cpp, lit and FileCheck (llvm-19-tools), GoogleTest, ninja,
# cmake. The CUDA 13 toolkit (NVRTC) is expected in /usr/local/cuda (or $CUDA_HOME).
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  llvm-19-dev llvm-19-tools libmlir-19-dev mlir-19-tools
  libyaml-cpp-dev libzstd-dev zlib1g-dev
  libgtest-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cuda="${CUDA_HOME:-/usr/local/cuda}"
if [ ! -e "$cuda/include/nvrtc.h" ]; then
  echo "setup: error: the CUDA toolkit (nvrtc.h) was not found in $cuda; set CUDA_HOME" >&2
  exit 1
fi
echo "setup: ok (LLVM/MLIR 19, yaml-cpp, lit, ninja; CUDA in $cuda)"
