#!/usr/bin/env bash
# Installs a self-contained prefix for the GPU machine (stripped binaries and libmuse; LLVM, MLIR and
# yaml-cpp linked in statically; NVRTC and the driver found there at run time) and checks with ldd
# that nothing else is needed. Usage: scripts/package.sh [PREFIX] (default: prefix/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
prefix="${1:-$root/prefix}"

bash "$root/scripts/build.sh"
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" --strip >/dev/null
mkdir -p "$prefix/share/muse"
cp -r "$root/specs" "$prefix/share/muse/"
cp "$root/scripts/gpu-check.sh" "$prefix/bin/"

bad=0
for f in "$prefix"/bin/* "$prefix"/lib/*.so*; do
  [ -f "$f" ] && file "$f" | grep -q ELF || continue
  # Libraries resolved inside the prefix (through $ORIGIN) travel with it.
  extra=$(ldd "$f" | grep -v "=> $prefix/" | awk '{print $1}' | grep -vE '^(linux-vdso|/lib64/ld-linux|libc\.so|libm\.so|libpthread|librt|libdl|libstdc\+\+|libgcc_s|libnvrtc|libmuse)' || true)
  if [ -n "$extra" ]; then
    echo "package: $f needs $extra" >&2
    bad=1
  fi
done
[ "$bad" = 0 ] || { echo "package: not self-contained" >&2; exit 1; }
du -sh "$prefix"
