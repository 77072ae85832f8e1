"""A GPT-style byte-level decoder for the pretraining example.

Pre-norm blocks (RMSNorm), rotary positions on queries and keys, SwiGLU MLP,
vocabulary of 256 bytes (no tokenizer), untied output head. The attention
itself is a function passed in (see attention.py), so the exact and the MuSe
model are the same module with the same parameters and initialisation.

With the defaults (d_model 512, 9 layers, 8 heads of 64, MLP 1408) the model
has 29.2M parameters.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab: int = 256
    d_model: int = 512
    n_layers: int = 9
    n_heads: int = 8
    mlp_hidden: int = 1408  # ~8/3 * d_model rounded to a multiple of 64 (SwiGLU)
    rope_base: float = 10000.0
    max_context: int = 16384

    @property
    def head_dim(self):
        return self.d_model // self.n_heads

    def validate(self):
        if self.d_model % self.n_heads:
            raise ValueError("d_model %d is not a multiple of n_heads %d"
                             % (self.d_model, self.n_heads))
        if self.head_dim % 2:
            raise ValueError("head dim %d must be even for rotary positions" % self.head_dim)

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # Normalise in fp32 even under bf16 autocast: the mean of squares of a
        # 512-wide row loses too much in bf16.
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rotary_tables(head_dim, length, base, device):
    """cos and sin of shape [length, head_dim/2] (fp32) for rotary positions."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32)
                          / head_dim))
    t = torch.arange(length, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv)
    return freqs.cos(), freqs.sin()


def apply_rotary(x, cos, sin):
    """x: [B, H, N, D]; rotates pairs (x[..., :D/2], x[..., D/2:]) (the
    half-split convention) by the position's angles. Computed in fp32."""
    d2 = x.shape[-1] // 2
    xf = x.float()
    x1, x2 = xf[..., :d2], xf[..., d2:]
    c, s = cos[: x.shape[2]], sin[: x.shape[2]]
    out = torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)
    return out.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg, attention_fn):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.attention_fn = attention_fn
        # Set by record_qkv.py: a callable that receives (q, k, v) exactly as
        # the attention function sees them (after rotary positions).
        self.capture = None

    def forward(self, x, cos, sin):
        B, N, _ = x.shape
        H, D = self.cfg.n_heads, self.cfg.head_dim
        qkv = self.qkv(x).view(B, N, 3, H, D).permute(2, 0, 3, 1, 4)  # 3, B, H, N, D
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        if self.capture is not None:
            self.capture(q, k, v)
        o = self.attention_fn(q, k, v)  # [B, H, N, D], causal
        o = o.transpose(1, 2).reshape(B, N, H * D)
        return self.proj(o)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg, attention_fn):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg, attention_fn)
        self.norm2 = RMSNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg, attention_fn):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, attention_fn) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        self.reset_parameters()
        cos, sin = rotary_tables(cfg.head_dim, cfg.max_context, cfg.rope_base, device="cpu")
        # Not parameters and not saved: derived from the config.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def reset_parameters(self):
        # GPT-2 style: N(0, 0.02), residual projections scaled by 1/sqrt(2L)
        # so the residual stream's variance does not grow with depth.
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            s = std / math.sqrt(2 * self.cfg.n_layers) if name.endswith(
                ("proj.weight", "down.weight")) else std
            nn.init.normal_(p, mean=0.0, std=s)

    def set_attention(self, attention_fn):
        for b in self.blocks:
            b.attn.attention_fn = attention_fn

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None):
        """idx: [B, N] uint8/int64 bytes. Returns logits [B, N, 256], or the
        mean cross-entropy (fp32) when targets are given."""
        B, N = idx.shape
        if N > self.cfg.max_context:
            raise ValueError("sequence of %d bytes is longer than max_context %d"
                             % (N, self.cfg.max_context))
        x = self.embed(idx.long())
        for b in self.blocks:
            x = b(x, self.rope_cos, self.rope_sin)
        logits = self.head(self.norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]),
                               targets.long().reshape(-1))
