#!/usr/bin/env bash
# The test command: set-up, build, then every test (unit, lit, NVRTC compilation of specs/, and the
# GPU tests, which skip where there is no GPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

bash "$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure ${MUSE_JOBS:+-j "$MUSE_JOBS"}
