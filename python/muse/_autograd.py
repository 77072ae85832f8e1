"""Autograd for muse.attention: the custom op muse::attention_backward and its
registration as the derivative of muse::attention_forward.

Schema: (q, k, v, o, workspace, grad_o, grad_lse, spec, overrides,
         is_causal) -> (dq, dk, dv)
  q, k, v, o and workspace are those of one forward call made with
  for_backward=True (muse/_ops.py): the backward reads the partitions,
  centroids and summaries that forward left in its workspace, so the gradient
  belongs to exactly the clustering whose output the loss saw (ALGORITHM.md
  section 5, templates/README.md "Backward"). dq, dk, dv have the shapes of q,
  k, v (GQA: k's and v's head count; the kernels sum over each group) and
  their dtypes; the kernels accumulate in fp32 and libmuse rounds each
  element once into the inputs' dtype (no fp32 copies, no casts here).

Both ops are custom ops with fake implementations, so torch.compile traces the
forward and the backward into its graphs (AOTAutograd); the backward needs no
GPU state beyond its arguments.
"""

from typing import Tuple

import torch

from . import _library, _ops

OP_NAME = "muse::attention_backward"

NO_WORKSPACE = (
    "muse: muse::attention_forward was called with for_backward=False, so its workspace (the "
    "partitions and summaries the backward reads) was not kept; call muse.attention(), which "
    "passes for_backward=True whenever an input requires grad")


def _as_input(t, dtype):
    """`dtype` (the inputs' dtype, which libmuse reads o and dO in) with a
    contiguous last dimension and rows that do not overlap; batch and head
    strides pass through as they are. The expanded gradient of a sum (every
    stride 0) is made dense. A no-op for the usual bf16/f16 o and dO."""
    if t.dtype != dtype:
        t = t.to(dtype)
    if t.stride(3) != 1 or (t.shape[2] > 1 and t.stride(2) < t.shape[3]):
        t = t.contiguous()
    return t


def _backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
              workspace: torch.Tensor, grad_o: torch.Tensor, grad_lse: torch.Tensor,
              spec: str, overrides: str,
              is_causal: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, H, N, D = q.shape
    Hkv, M = k.shape[1], k.shape[2]
    Dv = v.shape[3]
    device = q.device
    att = _ops.attention_for(spec, overrides, is_causal, q.dtype, D, Dv, H // Hkv, device.index)
    need = att.backward_workspace_bytes(B, H, Hkv, N, M)
    if workspace.dtype != torch.uint8 or workspace.numel() < need:
        raise ValueError("muse::attention_backward: the workspace has %d bytes but this shape "
                         "needs %d: pass the workspace its forward returned with "
                         "for_backward=True" % (workspace.numel(), need))
    # libmuse reads o and dO in the inputs' dtype, as flash attention's
    # backward does: o feeds only delta_n = dO_n . o_n, so a bf16/f16 model's
    # o and dO pass through without a copy (an fp32 o from out_dtype, and its
    # gradient, are rounded here).
    o_in = _as_input(o, q.dtype)
    d_o = _as_input(grad_o, q.dtype)
    d_lse = grad_lse.to(torch.float32).contiguous()
    dq = torch.empty((B, H, N, D), dtype=q.dtype, device=device)
    dk = torch.empty((B, Hkv, M, D), dtype=q.dtype, device=device)
    dv = torch.empty((B, Hkv, M, Dv), dtype=q.dtype, device=device)
    S = _library._Stride

    def st(t):
        s = t.stride()
        return S(s[0], s[1], s[2])

    args = _library.BackwardArgs(
        _library.Shape(B, H, Hkv, N, M),
        q.data_ptr(), st(q), k.data_ptr(), st(k), v.data_ptr(), st(v),
        o_in.data_ptr(), st(o_in),
        None,  # lse: the workspace's copy, which is the forward's
        d_o.data_ptr(), st(d_o),
        d_lse.data_ptr(),
        dq.data_ptr(), st(dq), dk.data_ptr(), st(dk), dv.data_ptr(), st(dv),
        workspace.data_ptr(), workspace.numel(),
        _library.OUTPUT_INPUT)
    index = device.index
    if index != torch.cuda.current_device():
        with torch.cuda.device(index):
            att.backward(args, torch.cuda.current_stream(device).cuda_stream)
    else:
        att.backward(args, torch.cuda.current_stream(device).cuda_stream)
    return dq, dk, dv


# The backward writes its scratch into the tail of the workspace that the
# forward reserved for it (after the forward's buffers, which it only reads);
# no op reads that tail, so the workspace is declared read-only: declaring it
# mutated would make AOTAutograd copy the whole saved workspace before every
# compiled backward.
attention_backward = torch.library.custom_op(
    OP_NAME, _backward, mutates_args=(), device_types="cuda",
    schema="(Tensor q, Tensor k, Tensor v, Tensor o, Tensor workspace, Tensor grad_o, "
           "Tensor grad_lse, str spec, str overrides, bool is_causal) -> (Tensor, Tensor, Tensor)")


@attention_backward.register_fake
def _backward_fake(q, k, v, o, workspace, grad_o, grad_lse, spec, overrides, is_causal):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("muse: the backward of muse.attention is not itself differentiable "
                       "(no double backward, e.g. create_graph=True through it)")


def _setup_nothing(ctx, inputs, output):
    pass


attention_backward.register_autograd(_no_double_backward, setup_context=_setup_nothing)


def _setup_context(ctx, inputs, output):
    q, k, v, spec, overrides, is_causal, _, for_backward = inputs
    o, _, workspace = output  # the workspace is uint8, so never differentiable
    ctx.config = (spec, overrides, is_causal, for_backward)
    # Gradients of unused outputs stay None instead of being materialised
    # as zeros: the workspace's would be a memset of its whole size.
    ctx.set_materialize_grads(False)
    if for_backward:
        ctx.save_for_backward(q, k, v, o, workspace)


def _attention_backward(ctx, grad_o, grad_lse, grad_workspace):
    spec, overrides, is_causal, for_backward = ctx.config
    if not for_backward:
        raise RuntimeError(NO_WORKSPACE)
    if grad_o is None and grad_lse is None:
        return None, None, None, None, None, None, None, None
    q, k, v, o, workspace = ctx.saved_tensors
    # An unused output's gradient is passed as zeros, so the op takes plain
    # tensors (dO in the inputs' dtype; dLse is [B, H, N]).
    if grad_o is None:
        grad_o = torch.zeros_like(o, dtype=q.dtype)
    if grad_lse is None:
        B, H, N = o.shape[:3]
        grad_lse = torch.zeros((B, H, N), dtype=torch.float32, device=o.device)
    dq, dk, dv = attention_backward(q, k, v, o, workspace, grad_o, grad_lse, spec, overrides,
                                    is_causal)
    need = ctx.needs_input_grad
    return (dq if need[0] else None, dk if need[1] else None, dv if need[2] else None,
            None, None, None, None, None)


_ops.attention_forward.register_autograd(_attention_backward, setup_context=_setup_context)
