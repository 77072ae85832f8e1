"""Finding and loading libmuse.so, and the ctypes view of its C ABI.

The declarations below mirror include/muse/muse.h (MUSE_ABI_VERSION 3); the
library's own muse_abi_version() is checked at load so that a stale build is
reported instead of misread.

Where the library is looked for, in order (the first that exists is loaded):
  1. $MUSE_LIBRARY: the file itself, or a folder holding libmuse.so. When set,
     nothing else is tried, so a wrong value is an error, not a silent
     fallback to another build.
  2. An installed prefix: <prefix>/lib/libmuse.so next to this package,
     which `cmake --install` puts in <prefix>/python/muse.
  3. A source checkout: build/lib/libmuse.so and build/lib/Runtime/libmuse.so
     under the repository that holds this package (python/muse).
  4. The system loader (LD_LIBRARY_PATH, ldconfig) by the name libmuse.so.
"""

import ctypes
import os
import threading

from . import _errors

ABI_VERSION = 3
LIBRARY_NAME = "libmuse.so"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class Shape(ctypes.Structure):
    _fields_ = [("B", ctypes.c_int64), ("H", ctypes.c_int64), ("Hkv", ctypes.c_int64),
                ("N", ctypes.c_int64), ("M", ctypes.c_int64)]


_Stride = ctypes.c_int64 * 3

# muse_output_type_t: outputs (o; dq, dk, dv) in fp32 or in the attention's dtype.
OUTPUT_F32 = 0
OUTPUT_INPUT = 1


class ForwardArgs(ctypes.Structure):
    _fields_ = [
        ("shape", Shape),
        ("q", ctypes.c_void_p), ("q_stride", _Stride),
        ("k", ctypes.c_void_p), ("k_stride", _Stride),
        ("v", ctypes.c_void_p), ("v_stride", _Stride),
        ("o", ctypes.c_void_p), ("o_stride", _Stride),
        ("lse", ctypes.c_void_p),
        ("workspace", ctypes.c_void_p), ("workspace_bytes", ctypes.c_int64),
        ("query_assign", ctypes.c_void_p),
        ("key_assign", ctypes.c_void_p),
        ("o_type", ctypes.c_int32),
    ]


class BackwardArgs(ctypes.Structure):
    """muse_backward_args_t: o and d_o in the attention's dtype, the gradients
    fp32 or in that dtype (grad_type); lse and d_lse ([B, H, N] contiguous)
    may be NULL."""
    _fields_ = [
        ("shape", Shape),
        ("q", ctypes.c_void_p), ("q_stride", _Stride),
        ("k", ctypes.c_void_p), ("k_stride", _Stride),
        ("v", ctypes.c_void_p), ("v_stride", _Stride),
        ("o", ctypes.c_void_p), ("o_stride", _Stride),
        ("lse", ctypes.c_void_p),
        ("d_o", ctypes.c_void_p), ("d_o_stride", _Stride),
        ("d_lse", ctypes.c_void_p),
        ("dq", ctypes.c_void_p), ("dq_stride", _Stride),
        ("dk", ctypes.c_void_p), ("dk_stride", _Stride),
        ("dv", ctypes.c_void_p), ("dv_stride", _Stride),
        ("workspace", ctypes.c_void_p), ("workspace_bytes", ctypes.c_int64),
        ("grad_type", ctypes.c_int32),
    ]


class AttentionInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p), ("arch", ctypes.c_char_p), ("dtype", ctypes.c_char_p),
        ("head_dim", ctypes.c_int), ("value_dim", ctypes.c_int),
        ("kv_heads_ratio", ctypes.c_int), ("causal", ctypes.c_int),
        ("query_clusters", ctypes.c_int), ("key_clusters", ctypes.c_int),
        ("scale", ctypes.c_double),
        ("num_launches", ctypes.c_int),
    ]


def candidate_paths(environ=None, package_dir=None):
    """The paths tried, in order, as (path, where) pairs; None as path stands
    for the system loader. Exposed for tests and for muse.env()."""
    environ = os.environ if environ is None else environ
    package_dir = _PACKAGE_DIR if package_dir is None else package_dir
    explicit = environ.get("MUSE_LIBRARY")
    if explicit:
        path = os.path.join(explicit, LIBRARY_NAME) if os.path.isdir(explicit) else explicit
        return [(path, "MUSE_LIBRARY")]
    parent = os.path.dirname(package_dir)       # <prefix>/python or <repo>/python
    root = os.path.dirname(parent)              # <prefix> or <repo>
    return [
        (os.path.join(root, "lib", LIBRARY_NAME), "installed prefix"),
        (os.path.join(root, "build", "lib", LIBRARY_NAME), "source checkout"),
        (os.path.join(root, "build", "lib", "Runtime", LIBRARY_NAME), "source checkout"),
        (None, "system loader"),
    ]


def _declare(lib):
    """Argument and result types of every C ABI function we call."""
    P = ctypes.POINTER
    c_status = ctypes.c_int
    engine_p = ctypes.c_void_p
    att_p = ctypes.c_void_p
    sig = {
        "muse_version": (ctypes.c_char_p, []),
        "muse_abi_version": (ctypes.c_int, []),
        "muse_last_error": (ctypes.c_char_p, []),
        "muse_engine_create": (c_status, [P(engine_p)]),
        "muse_engine_destroy": (None, [engine_p]),
        "muse_attention_build_file": (c_status, [engine_p, ctypes.c_char_p, P(att_p)]),
        "muse_attention_build_string": (c_status, [engine_p, ctypes.c_char_p, P(att_p)]),
        "muse_attention_build_string_overrides": (
            c_status, [engine_p, ctypes.c_char_p, P(ctypes.c_char_p), ctypes.c_int, P(att_p)]),
        "muse_engine_precompile_file": (c_status, [engine_p, ctypes.c_char_p]),
        "muse_attention_destroy": (None, [att_p]),
        "muse_attention_info": (c_status, [att_p, P(AttentionInfo)]),
        "muse_attention_workspace_bytes": (c_status, [att_p, P(Shape), P(ctypes.c_int64)]),
        "muse_attention_forward": (c_status, [att_p, P(ForwardArgs), ctypes.c_void_p]),
        "muse_attention_backward_workspace_bytes": (
            c_status, [att_p, P(Shape), P(ctypes.c_int64)]),
        "muse_attention_backward": (c_status, [att_p, P(BackwardArgs), ctypes.c_void_p]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)  # AttributeError: the library is not libmuse
        fn.restype = restype
        fn.argtypes = argtypes


class Library:
    """A loaded libmuse with its path; raises MuseError subclasses."""

    def __init__(self, cdll, path):
        self.cdll = cdll
        self.path = path
        try:
            _declare(cdll)
        except AttributeError as e:
            raise _errors.MuseLibraryNotFound("%s is not libmuse: %s" % (path, e)) from e
        abi = cdll.muse_abi_version()
        if abi != ABI_VERSION:
            raise _errors.MuseLibraryNotFound(
                "%s has C ABI version %d but this muse package speaks version %d; "
                "rebuild libmuse and the package from the same checkout" %
                (path, abi, ABI_VERSION))
        self.version = cdll.muse_version().decode()
        self.abi_version = abi

    def last_error(self):
        return self.cdll.muse_last_error().decode(errors="replace")

    def check(self, status):
        """Raises the exception for a non-zero status with muse_last_error()."""
        if status != _errors.OK:
            raise _errors.error_for_status(status, self.last_error())


def _load_one(path):
    # RTLD_LOCAL (the default): libmuse's symbols stay out of the process's
    # global namespace, next to PyTorch's own CUDA libraries.
    return ctypes.CDLL(path if path is not None else LIBRARY_NAME)


def load(environ=None, package_dir=None):
    """Loads libmuse from the first candidate that exists; an error lists them all."""
    tried = []
    for path, where in candidate_paths(environ, package_dir):
        if path is not None and not os.path.exists(path):
            tried.append("%s (%s): not found" % (path, where))
            continue
        try:
            cdll = _load_one(path)
        except OSError as e:
            if path is None:
                tried.append("%s through the %s: %s" % (LIBRARY_NAME, where, e))
                continue
            raise _errors.MuseLibraryNotFound(
                "could not load %s (%s): %s" % (path, where, e), _errors.INTERNAL) from e
        return Library(cdll, path if path is not None else LIBRARY_NAME)
    raise _errors.MuseLibraryNotFound(
        "libmuse.so was not found; tried:\n  " + "\n  ".join(tried) +
        "\nbuild it (scripts/build.sh), install it (cmake --install BUILD --prefix P, then "
        "PYTHONPATH=P/python), or set MUSE_LIBRARY to the file")


_lock = threading.Lock()
_library = None


def library():
    """The process's libmuse, loaded on first use."""
    global _library
    lib = _library
    if lib is None:
        with _lock:
            if _library is None:
                _library = load()
            lib = _library
    return lib
