"""Engines and compiled attentions over the C ABI (no torch here).

One Engine per process (NVRTC, the driver, the kernel cache); an Attention is
one spec compiled and loaded into the current CUDA context. `forward` takes raw
device pointers and strides, so the torch layer (and any other array library)
only has to supply those.
"""

import ctypes
import threading

from . import _errors, _library, _spec


class Info:
    """What a compiled attention was built for (muse_attention_info_t)."""

    __slots__ = ("name", "arch", "dtype", "head_dim", "value_dim", "kv_heads_ratio", "causal",
                 "query_clusters", "key_clusters", "scale", "num_launches")

    def __init__(self, c):
        self.name = c.name.decode()
        self.arch = c.arch.decode()
        self.dtype = c.dtype.decode()
        self.head_dim = c.head_dim
        self.value_dim = c.value_dim
        self.kv_heads_ratio = c.kv_heads_ratio
        self.causal = bool(c.causal)
        self.query_clusters = c.query_clusters
        self.key_clusters = c.key_clusters
        self.scale = c.scale
        self.num_launches = c.num_launches

    def __repr__(self):
        return "Info(%s)" % ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__)


class Attention:
    """A compiled and loaded spec. Thread-safe for forward and backward
    (libmuse keeps no per-call state in the attention: a backward's state is
    the forward's workspace); destroyed with the Python object."""

    def __init__(self, lib, handle):
        self._lib = lib
        self._handle = handle
        c = _library.AttentionInfo()
        lib.check(lib.cdll.muse_attention_info(handle, ctypes.byref(c)))
        self.info = Info(c)
        self._workspace = {}  # shape tuple -> bytes; a plan's size depends on the shape only
        self._backward_workspace = {}  # the same for a forward + backward pair
        self._forward = lib.cdll.muse_attention_forward
        self._backward = lib.cdll.muse_attention_backward

    def __del__(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.cdll.muse_attention_destroy(handle)

    def _bytes(self, memo, query, B, H, Hkv, N, M):
        key = (B, H, Hkv, N, M)
        n = memo.get(key)
        if n is None:
            out = ctypes.c_int64()
            self._lib.check(query(self._handle, ctypes.byref(_library.Shape(B, H, Hkv, N, M)),
                                  ctypes.byref(out)))
            n = out.value
            if len(memo) > 4096:  # many lengths in one process: stay bounded
                memo.clear()
            memo[key] = n
        return n

    def workspace_bytes(self, B, H, Hkv, N, M):
        """Bytes of the workspace of a forward call."""
        return self._bytes(self._workspace, self._lib.cdll.muse_attention_workspace_bytes,
                           B, H, Hkv, N, M)

    def backward_workspace_bytes(self, B, H, Hkv, N, M):
        """Bytes of a workspace that serves a forward call and then its
        backward (>= workspace_bytes: the backward's scratch follows the
        forward's buffers)."""
        return self._bytes(self._backward_workspace,
                           self._lib.cdll.muse_attention_backward_workspace_bytes,
                           B, H, Hkv, N, M)

    def forward(self, args, stream):
        """args: a filled _library.ForwardArgs; stream: a CUstream as int (0 =
        the default stream)."""
        status = self._forward(self._handle, ctypes.byref(args), stream)
        if status:
            self._lib.check(status)

    def backward(self, args, stream):
        """args: a filled _library.BackwardArgs whose workspace is the one the
        forward call used; stream: as for forward."""
        status = self._backward(self._handle, ctypes.byref(args), stream)
        if status:
            self._lib.check(status)


class Engine:
    """The process's compiler and cache (muse_engine_t)."""

    def __init__(self, lib=None):
        self._lib = lib or _library.library()
        handle = ctypes.c_void_p()
        self._lib.check(self._lib.cdll.muse_engine_create(ctypes.byref(handle)))
        self._handle = handle

    def __del__(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.cdll.muse_engine_destroy(handle)

    def build(self, yaml_text, overrides=(), origin=None):
        """Compiles (through the cache) and loads a spec into the current CUDA
        context. `origin` (a file name) replaces "<string>" in diagnostics."""
        lines = [o.encode() for o in overrides]
        array = (ctypes.c_char_p * max(len(lines), 1))(*lines)
        handle = ctypes.c_void_p()
        status = self._lib.cdll.muse_attention_build_string_overrides(
            self._handle, yaml_text.encode(), array, len(lines), ctypes.byref(handle))
        if status:
            message = self._lib.last_error()
            if origin:
                message = message.replace("<string>", origin)
            raise _errors.error_for_status(status, message)
        return Attention(self._lib, handle)

    def precompile_file(self, path):
        """Compiles a spec file into the cache without loading it (no GPU needed)."""
        self._lib.check(self._lib.cdll.muse_engine_precompile_file(self._handle, path.encode()))


_engine_lock = threading.Lock()
_engine = None


def engine():
    """The process's Engine, created on first use."""
    global _engine
    e = _engine
    if e is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine()
            e = _engine
    return e


def build_spec(spec_arg, override_text):
    """Builds a spec argument (the op's string form) with override lines."""
    yaml_text, origin = _spec.resolve_spec(spec_arg)
    return engine().build(yaml_text, _spec.split_overrides(override_text), origin)
