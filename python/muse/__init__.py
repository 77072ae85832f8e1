"""muse: Multipole Semantic Attention (MuSe) for PyTorch.

    import muse
    o = muse.attention(q, k, v)                      # [B, H, N, D] like SDPA
    o, lse = muse.attention(q, k, v, return_lse=True, query_clusters=32)
    o.float().sum().backward()                      # dq, dk, dv (acausal specs)

The kernels come from libmuse (C ABI, include/muse/muse.h), loaded with ctypes
(see muse/_library.py for where it is looked for; MUSE_LIBRARY overrides).
Importing muse needs no torch; muse.attention does (torch >= 2.4, for
torch.library.custom_op).
"""

__version__ = "0.1.0"

from ._errors import MuseArgumentError, MuseError, MuseLibraryNotFound, MuseSpecError  # noqa: F401
from ._env import env  # noqa: F401


def _torch_problem():
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not hasattr(getattr(torch, "library", None), "custom_op"):
        return "PyTorch %s is too old (torch.library.custom_op needs 2.4 or newer)" % (
            torch.__version__)
    return None


_TORCH_PROBLEM = _torch_problem()

if _TORCH_PROBLEM is None:
    # Registers muse::attention_forward, muse::attention_backward and the
    # autograd formula that links them.
    from ._api import attention  # noqa: F401
else:
    def attention(*args, **kwargs):
        """Unavailable: see muse._TORCH_PROBLEM."""
        raise ImportError("muse.attention needs PyTorch: " + _TORCH_PROBLEM)

__all__ = ["attention", "env", "MuseError", "MuseSpecError", "MuseArgumentError",
           "MuseLibraryNotFound", "__version__"]
