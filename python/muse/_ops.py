"""The custom op muse::attention_forward: its CUDA implementation over libmuse,
its fake (meta) implementation for torch.compile, and the cache of compiled
attentions.

Schema: (q, k, v, spec, overrides, is_causal, out_fp32, for_backward)
        -> (o, lse, workspace)
  q [B, H, N, D], k [B, Hkv, M, D], v [B, Hkv, M, Dv] on one CUDA device, one
  dtype (bf16, f16, f32), last dimension contiguous, any other strides;
  spec: "" for the default spec, else a YAML path or text; overrides:
  "section.field=value" lines (both may come with line breaks escaped, as
  muse.attention passes them: _spec.escape_line_breaks); o [B, H, N, Dv] in q's dtype (fp32 when
  out_fp32), lse [B, H, N] fp32 (natural log of each row's softmax sum).
  workspace: with for_backward, the forward's workspace as uint8, allocated
  with the backward's size (muse_attention_backward_workspace_bytes): the
  partitions, centroids and summaries the backward reads (muse/_autograd.py,
  muse::attention_backward); without it, an empty tensor (the forward's own
  workspace is freed when the call returns).
The strings are part of the schema, not hidden state, so that a compiled graph
holds everything needed to rebuild the attention.
"""

import threading
from typing import Tuple

import torch

from . import _library, _runtime, _spec

OP_NAME = "muse::attention_forward"

DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32"}
DIMS = (64, 128)
MAX_KV_HEADS_RATIO = 64


def validate(q, k, v, is_causal):
    """Shape, dtype and device checks shared by muse.attention and the op;
    every message names the problem and what is allowed. Plain Python on
    tensor metadata, so torch.compile traces it into guards."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError("muse: %s must be a torch.Tensor, not %s" % (name, type(t).__name__))
        if t.dim() != 4:
            raise ValueError("muse: %s must be 4-D (batch, heads, sequence, head dim) as in "
                             "scaled_dot_product_attention; got shape %s" % (name, tuple(t.shape)))
    if q.device.type != "cuda":
        raise ValueError("muse: q, k and v must be CUDA tensors; q is on %s. MuSe has GPU "
                         "kernels only and never falls back to exact attention" % q.device)
    if k.device != q.device or v.device != q.device:
        raise ValueError("muse: q, k and v must be on one device; got q on %s, k on %s, v on %s"
                         % (q.device, k.device, v.device))
    if q.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise TypeError("muse: unsupported dtype %s; allowed: torch.bfloat16, torch.float16, "
                        "torch.float32" % q.dtype)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError("muse: q, k and v must have one dtype; got %s, %s, %s"
                        % (q.dtype, k.dtype, v.dtype))
    B, H, N, D = q.shape
    Bk, Hkv, M, Dk = k.shape
    Bv, Hv, Mv, Dv = v.shape
    if D not in DIMS:
        raise ValueError("muse: head dim %d of q is not supported; allowed: 64, 128" % D)
    if Dk != D:
        raise ValueError("muse: k has head dim %d but q has %d; they must match" % (Dk, D))
    if Dv not in DIMS:
        raise ValueError("muse: head dim %d of v is not supported; allowed: 64, 128" % Dv)
    if Bk != B or Bv != B:
        raise ValueError("muse: batch sizes differ: q %d, k %d, v %d" % (B, Bk, Bv))
    if Hv != Hkv or Mv != M:
        raise ValueError("muse: k %s and v %s must agree in heads and length"
                         % (tuple(k.shape), tuple(v.shape)))
    if B < 1 or H < 1 or N < 1 or M < 1:
        raise ValueError("muse: every dimension must be >= 1; got q %s, k %s"
                         % (tuple(q.shape), tuple(k.shape)))
    if H % Hkv != 0 or H // Hkv > MAX_KV_HEADS_RATIO:
        raise ValueError("muse: q has %d heads and k, v have %d; the query heads must be a "
                         "multiple (1 to %d times) of the key/value heads (GQA)"
                         % (H, Hkv, MAX_KV_HEADS_RATIO))
    if is_causal and N != M:
        raise ValueError("muse: is_causal=True needs as many queries as keys; got N=%d, M=%d"
                         % (N, M))


def _check_built(info, dtype_name, D, Dv, ratio, is_causal, where):
    """A spec given by the user must agree with the tensors; say how to fix it."""
    problems = []
    for field, have, want in (("attention.dtype", info.dtype, dtype_name),
                              ("attention.head_dim", info.head_dim, D),
                              ("attention.value_dim", info.value_dim, Dv),
                              ("attention.kv_heads_ratio", info.kv_heads_ratio, ratio),
                              ("attention.causal", info.causal, is_causal)):
        if have != want:
            w = ("true" if want else "false") if isinstance(want, bool) else want
            h = ("true" if have else "false") if isinstance(have, bool) else have
            problems.append("%s is %s but the call needs %s" % (field, h, w))
    if problems:
        raise ValueError("muse: spec %s does not match the tensors: %s. Fix the spec, pass the "
                         "field as a keyword (e.g. dtype='bf16'), or convert the tensors"
                         % (where, "; ".join(problems)))


_attentions = {}
_build_lock = threading.Lock()


def attention_for(spec, overrides, is_causal, dtype, D, Dv, ratio, device_index):
    """The compiled attention for a call, built on first use and cached per
    (spec argument, overrides, causal, dtype, dims, GQA ratio, device)."""
    key = (spec, overrides, is_causal, dtype, D, Dv, ratio, device_index)
    att = _attentions.get(key)
    if att is not None:
        return att
    with _build_lock:
        att = _attentions.get(key)
        if att is not None:
            return att
        dtype_name = DTYPE_NAMES[dtype]
        # muse.attention passes the strings escaped to single lines.
        spec = _spec.unescape_line_breaks(spec)
        overrides = _spec.unescape_line_breaks(overrides)
        major, minor = torch.cuda.get_device_capability(device_index)
        text = _spec.call_overrides(spec, overrides, is_causal, dtype_name, D, Dv, ratio,
                                    "sm_%d%d" % (major, minor))
        with torch.cuda.device(device_index):
            att = _runtime.build_spec(spec, text)
        where = "'%s' (%s)" % (att.info.name, "default" if spec == "" else
                              ("YAML text" if _spec.is_yaml_text(spec) else spec))
        _check_built(att.info, dtype_name, D, Dv, ratio, is_causal, where)
        _attentions[key] = att
        return att


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream


def launch(q, k, v, spec, overrides, is_causal, out_fp32, for_backward=False):
    """Runs the forward on validated tensors (last dimension contiguous) on
    the current stream of their device. Returns (o, lse, workspace), the
    workspace None unless for_backward."""
    B, H, N, D = q.shape
    Hkv, M = k.shape[1], k.shape[2]
    Dv = v.shape[3]
    device = q.device
    index = device.index
    att = attention_for(spec, overrides, is_causal, q.dtype, D, Dv, H // Hkv, index)
    # o straight in q's dtype (libmuse rounds each element once from fp32),
    # or fp32 when asked for.
    o_dtype = torch.float32 if out_fp32 else q.dtype
    o = torch.empty((B, H, N, Dv), dtype=o_dtype, device=device)
    lse = torch.empty((B, H, N), dtype=torch.float32, device=device)
    nbytes = (att.backward_workspace_bytes if for_backward else att.workspace_bytes)(
        B, H, Hkv, N, M)
    # From PyTorch's caching allocator on the launch stream, so the block is
    # reused only after the kernels that use it (stream order).
    workspace = torch.empty(nbytes, dtype=torch.uint8, device=device) if nbytes else None
    qs, ks, vs, os_ = q.stride(), k.stride(), v.stride(), o.stride()
    S = _library._Stride
    args = _library.ForwardArgs(
        _library.Shape(B, H, Hkv, N, M),
        q.data_ptr(), S(qs[0], qs[1], qs[2]),
        k.data_ptr(), S(ks[0], ks[1], ks[2]),
        v.data_ptr(), S(vs[0], vs[1], vs[2]),
        o.data_ptr(), S(os_[0], os_[1], os_[2]),
        lse.data_ptr(),
        workspace.data_ptr() if workspace is not None else None, nbytes,
        None, None,
        _library.OUTPUT_F32 if o_dtype == torch.float32 else _library.OUTPUT_INPUT)
    if index != torch.cuda.current_device():
        # The attention lives in this device's context; make it current.
        with torch.cuda.device(index):
            att.forward(args, _stream(device))
    else:
        att.forward(args, _stream(device))
    return o, lse, (workspace if for_backward else None)


def _check_inner_contiguous(q, k, v):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(3) != 1:
            raise ValueError("muse::attention_forward: the last dimension of %s must be "
                             "contiguous (stride 1), got strides %s; muse.attention() makes "
                             "such a copy itself" % (name, tuple(t.stride())))


def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: str, overrides: str,
             is_causal: bool, out_fp32: bool,
             for_backward: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    validate(q, k, v, is_causal)
    _check_inner_contiguous(q, k, v)
    o, lse, workspace = launch(q, k, v, spec, overrides, is_causal, out_fp32, for_backward)
    if workspace is None:
        workspace = torch.empty(0, dtype=torch.uint8, device=q.device)
    return o, lse, workspace


attention_forward = torch.library.custom_op(
    OP_NAME, _forward, mutates_args=(), device_types="cuda",
    schema="(Tensor q, Tensor k, Tensor v, str spec, str overrides, bool is_causal, "
           "bool out_fp32, bool for_backward) -> (Tensor, Tensor, Tensor)")


def _concrete(n):
    # A symbolic size (torch.compile with dynamic shapes) becomes its value,
    # which adds a guard: the workspace's size is the compiled plan's
    # Σ align256(heads·(a·N + b·M + c)) over its buffers, known only to
    # libmuse for concrete shapes, so a traced training graph is specialised
    # to its shape (inference graphs, which carry no workspace, stay dynamic).
    return n if isinstance(n, int) else int(n)


@attention_forward.register_fake
def _forward_fake(q, k, v, spec, overrides, is_causal, out_fp32, for_backward):
    # Shapes only. Inference needs no library and no GPU, so tracing works
    # anywhere; a training graph saves the workspace, whose size comes from
    # the compiled spec (built here on first use, then cached).
    B, H, N, D = q.shape
    Hkv, M = k.shape[1], k.shape[2]
    Dv = v.shape[3]
    o = q.new_empty((B, H, N, Dv), dtype=torch.float32 if out_fp32 else q.dtype)
    lse = q.new_empty((B, H, N), dtype=torch.float32)
    nbytes = 0
    if for_backward:
        b, h, hkv, n, m, d, dv = (_concrete(x) for x in (B, H, Hkv, N, M, D, Dv))
        index = q.device.index if q.device.index is not None else torch.cuda.current_device()
        att = attention_for(spec, overrides, is_causal, q.dtype, d, dv, h // hkv, index)
        nbytes = att.backward_workspace_bytes(b, h, hkv, n, m)
    workspace = q.new_empty((nbytes,), dtype=torch.uint8)
    return o, lse, workspace
