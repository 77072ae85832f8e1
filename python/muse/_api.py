"""muse.attention: MuSe as a drop-in for scaled_dot_product_attention."""

import torch

from . import _autograd, _ops, _spec  # noqa: F401  (_autograd registers the backward)


def _inner_contiguous(t):
    # The kernels read rows of D elements with any batch/head/row strides (no
    # alignment needed), but the elements of a row must be adjacent: a view
    # with a strided last dimension (x.transpose(-1, -2), x[..., ::2]) is
    # copied once rather than refused, as scaled_dot_product_attention does.
    return t if t.stride(3) == 1 else t.contiguous()


def attention(q, k, v, is_causal=False, spec=None, scale=None, return_lse=False,
              out_dtype=None, **overrides):
    """Multipole Semantic Attention, in the layout of
    torch.nn.functional.scaled_dot_product_attention.

    q: [B, H, N, D]; k: [B, H_kv, M, D]; v: [B, H_kv, M, Dv] on one CUDA
    device, one dtype (bfloat16, float16, float32); D and Dv are 64 or 128;
    H a multiple of H_kv (GQA: k and v are never repeated). Any strides; a
    strided last dimension is copied.

    spec: None (the default spec, whose dtype, dims, GQA ratio, causality and
    target architecture are then taken from the call), a path to a YAML spec,
    or the YAML text. A given spec must agree with the tensors (dtype,
    head_dim, value_dim, kv_heads_ratio, causal): a mismatch is a ValueError
    naming the field. Keywords override single fields of the spec:
    query_clusters=32, key_clusters=32, kmeans_iters=3, order=0|1,
    near_clusters=4, block_q=..., arch='sm_90', ... or any
    **{'section.field': value}. scale: the softmax scale (default: the
    spec's, 1/sqrt(D) for 'auto'); each distinct value compiles once.

    Returns o [B, H, N, Dv] in q's dtype (out_dtype=torch.float32 for the
    kernel's fp32 output without the conversion), and with return_lse=True
    also lse [B, H, N] fp32. Runs on the current stream of q's device; the
    compiled kernels are cached per (spec, overrides, dtype, dims, device).

    Differentiable in q, k, v (and through lse): when one of them requires
    grad, the forward keeps its workspace (partitions, centroids, summaries)
    until the backward, which gives the gradient of MuSe with the forward's
    partitions held fixed, in the inputs' dtypes. A spec whose backward libmuse
    lacks (causal, in builds without the causal backward) raises MuseError at
    .backward(), never a silent fallback.
    """
    is_causal = bool(is_causal)
    _ops.validate(q, k, v, is_causal)
    if out_dtype is None or out_dtype == q.dtype:
        out_fp32 = q.dtype == torch.float32
    elif out_dtype == torch.float32:
        out_fp32 = True
    else:
        raise TypeError("muse: out_dtype must be None (q's dtype) or torch.float32, not %s"
                        % out_dtype)
    spec_arg = _spec.spec_argument(spec)
    text = _spec.format_overrides(overrides) if overrides else ""
    if scale is not None:
        value = scale if isinstance(scale, float) else float(scale)
        text = _spec.join_overrides(text, "attention.scale=" + _spec.format_value("scale", value))
    # Single-line strings for the op (see _spec.escape_line_breaks); the op
    # undoes it before building.
    spec_arg, text = _spec.escape_line_breaks(spec_arg), _spec.escape_line_breaks(text)
    q, k, v = _inner_contiguous(q), _inner_contiguous(k), _inner_contiguous(v)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        # Training: the forward keeps its workspace (partitions, centroids,
        # summaries) for muse::attention_backward; autograd saves it.
        o, lse, _ = torch.ops.muse.attention_forward(q, k, v, spec_arg, text, is_causal,
                                                     out_fp32, True)
    elif (not torch.compiler.is_compiling() and type(q) is torch.Tensor and
          type(k) is torch.Tensor and type(v) is torch.Tensor and not _dispatch_mode_active()):
        # Eager inference on plain tensors: call the op's implementation
        # directly, saving the dispatcher's Python round trip (see the host
        # overhead measurement in python/tests/test_torch.py).
        o, lse, _ = _ops.launch(q, k, v, spec_arg, text, is_causal, out_fp32)
    else:
        o, lse, _ = torch.ops.muse.attention_forward(q, k, v, spec_arg, text, is_causal,
                                                     out_fp32, False)
    return (o, lse) if return_lse else o


def _dispatch_mode_active():
    # Fake-tensor tracing, FlopCounterMode, ... must see the op through the
    # dispatcher, so the direct path is taken only when no mode is active.
    if _is_in_mode is not None:
        return _is_in_mode()
    return torch._C._len_torch_dispatch_stack() > 0


try:
    from torch.utils._python_dispatch import is_in_torch_dispatch_mode as _is_in_mode
except ImportError:  # older torch: the mode stack's length only
    _is_in_mode = None
