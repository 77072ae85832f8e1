"""The two causal attentions the example compares, as functions (q, k, v) -> o
in scaled_dot_product_attention's layout [B, H, N, D].

sdpa: PyTorch's scaled_dot_product_attention restricted to one backend
(cuDNN by default), so a run never silently measures another kernel.
muse: muse.attention(is_causal=True) with a spec file and keyword overrides.
"""

import os

import torch
import torch.nn.functional as F

SPECS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                      "specs"))

SDPA_BACKENDS = ("cudnn", "flash", "efficient", "math")


def sdpa_attention(backend="cudnn"):
    if backend not in SDPA_BACKENDS:
        raise ValueError("unknown SDPA backend %r; allowed: %s" % (backend, ", ".join(SDPA_BACKENDS)))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    chosen = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
              "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[backend]

    def attend(q, k, v):
        # Only the named backend is allowed: if it cannot run these inputs,
        # SDPA raises instead of falling back to a slower kernel.
        with sdpa_kernel([chosen]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    attend.description = "sdpa/%s causal" % backend
    return attend


def parse_overrides(items):
    """["near_clusters=4", "order=0"] -> {"near_clusters": 4, "order": 0}."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError("--muse-set takes FIELD=VALUE (e.g. near_clusters=4), got %r" % item)
        key, value = item.split("=", 1)
        key, value = key.strip(), value.strip()
        for conv in (int, float):
            try:
                value = conv(value)
                break
            except ValueError:
                pass
        else:
            if value in ("true", "false"):
                value = value == "true"
        out[key] = value
    return out


def parse_config(text):
    """"SPEC[:field=value,...]" -> (spec path, overrides). A SPEC that is not
    an existing path is looked up in the repository's specs/ folder."""
    spec, _, rest = text.partition(":")
    if not os.path.exists(spec):
        spec = os.path.join(SPECS, spec)
    return spec, parse_overrides(filter(None, rest.split(",")))


def muse_attention(spec=None, overrides=None):
    import muse  # the package from the muse install prefix (PYTHONPATH=PREFIX/python)
    overrides = dict(overrides or {})

    def attend(q, k, v):
        return muse.attention(q, k, v, is_causal=True, spec=spec, **overrides)

    attend.description = "muse causal spec=%s %s" % (spec or "default", overrides)
    return attend


def make_attention(kind, sdpa_backend="cudnn", muse_spec=None, muse_overrides=None):
    if kind == "sdpa":
        return sdpa_attention(sdpa_backend)
    if kind == "muse":
        return muse_attention(muse_spec, muse_overrides)
    raise ValueError("--attention must be sdpa or muse, got %r" % kind)
