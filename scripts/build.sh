#!/usr/bin/env bash
# Installs the dependencies (scripts/setup.sh), configures and builds muse into $BUILD_DIR
# (default: build). Release, no debug info; set MUSE_JOBS to limit parallelism.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$build" ${MUSE_JOBS:+-j "$MUSE_JOBS"}
echo "build: ok ($build)"
