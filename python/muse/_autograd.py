"""Autograd for muse.attention.

The forward is the custom op muse::attention_forward; the backward is the slot
where the backward kernels plug in once libmuse's C ABI exposes them (issue
"Training: backward kernels and a drop-in PyTorch attention"). Until then it
raises, so that training never silently gets wrong or missing gradients.
"""

import torch

from . import _ops  # noqa: F401  (registers torch.ops.muse.attention_forward)

BACKWARD_MISSING = (
    "muse: the backward of MuSe attention is not implemented yet (issue 'Training: backward "
    "kernels and a drop-in PyTorch attention'); libmuse's C ABI has no backward entry point. "
    "Call muse.attention under torch.no_grad() / torch.inference_mode(), or on inputs that do "
    "not require grad, until it lands")


def attention_backward(q, k, v, o, lse, grad_o, grad_lse, spec, overrides, is_causal):
    """dq, dk, dv for one forward. The one place the backward op will be
    called from; everything the kernels need (inputs, output, lse, the spec and
    overrides that built the forward) is already saved and passed here."""
    raise NotImplementedError(BACKWARD_MISSING)


class MuseAttentionFunction(torch.autograd.Function):
    """(q, k, v, spec, overrides, is_causal, out_fp32) -> (o, lse)."""

    @staticmethod
    def forward(q, k, v, spec, overrides, is_causal, out_fp32):
        return torch.ops.muse.attention_forward(q, k, v, spec, overrides, is_causal, out_fp32)

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k, v, spec, overrides, is_causal, _ = inputs
        o, lse = output
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.config = (spec, overrides, is_causal)

    @staticmethod
    def backward(ctx, grad_o, grad_lse):
        q, k, v, o, lse = ctx.saved_tensors
        spec, overrides, is_causal = ctx.config
        dq, dk, dv = attention_backward(q, k, v, o, lse, grad_o, grad_lse, spec, overrides,
                                        is_causal)
        return dq, dk, dv, None, None, None, None
