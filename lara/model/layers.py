"""Transformer building blocks shared by the stand-in backbone, the adapter and the DiT.

Written with plain tensor ops (matmul, softmax, layer_norm) and no data-dependent Python
control flow, so every module here exports with ``torch.onnx.export(..., dynamo=False)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0,
                         freq_shift: int = 0) -> torch.Tensor:
    """``[..., dim]`` sin/cos features of (integer or real) positions ``[...]``: cos first half, sin second.

    Frequency k is ``exp(-k ln(max_period) / (dim/2 - freq_shift))``: diffusers' ``Timesteps`` with
    ``flip_sin_to_cos=True, downscale_freq_shift=freq_shift`` (GR00T's DiT timestep uses 1)."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=positions.device) * (
        -math.log(max_period) / (half - freq_shift))
    angles = positions.to(torch.float32).unsqueeze(-1) * torch.exp(exponent)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class Attention(nn.Module):
    """Multi-head attention; ``context`` None is self-attention. ``key_mask`` [B, S] 1 = attend."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, head_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        inner = self.heads * self.head_dim
        context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(context_dim, inner)
        self.to_v = nn.Linear(context_dim, inner)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b = x.shape[0]
        q = self.to_q(x).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        k = self.to_k(context).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        v = self.to_v(context).reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        if key_mask is not None:
            bias = (1.0 - key_mask.to(scores.dtype)) * torch.finfo(scores.dtype).min
            scores = scores + bias[:, None, None, :]
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.to_out(out.transpose(1, 2).reshape(b, -1, self.heads * self.head_dim))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__(nn.Linear(dim, dim * mult), nn.GELU(approximate="tanh"), nn.Linear(dim * mult, dim))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention transformer layer (stand-in backbone and the VL adapter)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask=key_mask)
        return x + self.ff(self.norm2(x))


class TimestepEncoder(nn.Module):
    """Discrete flow bucket -> sinusoidal features -> MLP -> ``[B, width]`` conditioning vector."""

    def __init__(self, embed_dim: int, width: int, freq_shift: int = 0):
        super().__init__()
        self.embed_dim = embed_dim
        self.freq_shift = freq_shift
        self.mlp = nn.Sequential(nn.Linear(embed_dim, width), nn.SiLU(), nn.Linear(width, width))

    def features(self, timestep: torch.Tensor) -> torch.Tensor:
        """The sinusoid fed to the MLP."""
        return sinusoidal_embedding(timestep, self.embed_dim, freq_shift=self.freq_shift)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(timestep))


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift come from the timestep embedding: norm(x)(1 + scale) + shift."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-5)
        self.to_scale_shift = nn.Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.to_scale_shift(F.silu(temb)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None, :]) + shift[:, None, :]
