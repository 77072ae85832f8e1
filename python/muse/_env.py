"""muse.env(): what this process would run with, for bug reports."""

import os
import sys


def _cache_dir(environ):
    # The rule of CacheConfig::fromEnvironment (lib/Runtime/Cache.cpp).
    if environ.get("MUSE_CACHE_DISABLE", "").lower() not in ("", "0", "false", "no", "off"):
        return None
    if environ.get("MUSE_CACHE_DIR"):
        return environ["MUSE_CACHE_DIR"]
    xdg = environ.get("XDG_CACHE_HOME", "")
    if xdg.startswith("/"):  # relative values are ignored, as the XDG spec says
        return xdg + "/muse"
    if environ.get("HOME"):
        return environ["HOME"] + "/.cache/muse"
    return None


def env():
    """A dict: package and library versions, the library's path (or why it
    was not found), torch and its GPUs, the kernel cache directory."""
    from . import __version__, _errors, _library
    out = {"muse": __version__, "python": sys.version.split()[0]}
    try:
        lib = _library.library()
        out.update(library=lib.path, library_version=lib.version, abi_version=lib.abi_version)
    except _errors.MuseError as e:
        out.update(library=None, library_error=str(e))
    out["cache_dir"] = _cache_dir(os.environ)
    try:
        import torch
    except ImportError:
        out["torch"] = None
        return out
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            devices.append({"index": i, "name": torch.cuda.get_device_name(i),
                            "arch": "sm_%d%d" % (major, minor)})
    out["devices"] = devices
    return out
