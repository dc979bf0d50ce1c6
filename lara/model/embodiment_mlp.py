"""Embodiment-specific layers: one weight matrix per embodiment id, gathered by id.

Each layer holds ``weight [num_embodiments, in, out]`` and ``bias [num_embodiments, out]``;
``index_select`` picks the rows of the batch's embodiments and ``bmm`` applies them, which
exports to ONNX as Gather + MatMul (no Python branching on the id).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lara_g1.lara.model.layers import sinusoidal_embedding


class EmbodimentLinear(nn.Module):
    def __init__(self, num_embodiments: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embodiments, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_embodiments, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        """``x [B, T, in]``, ``embodiment_id i64 [B]`` -> ``[B, T, out]``."""
        w = torch.index_select(self.weight, 0, embodiment_id)
        b = torch.index_select(self.bias, 0, embodiment_id)
        return torch.bmm(x, w) + b.unsqueeze(1)


class EmbodimentMLP(nn.Module):
    """Two embodiment-specific layers with a ReLU: state encoder and action decoder."""

    def __init__(self, num_embodiments: int, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.layer1 = EmbodimentLinear(num_embodiments, in_dim, hidden_dim)
        self.layer2 = EmbodimentLinear(num_embodiments, hidden_dim, out_dim)

    def forward(self, x: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, embodiment_id)), embodiment_id)


class ActionEncoder(nn.Module):
    """Noisy action + sinusoidal embedding of the flow bucket -> one token per action step.

    GR00T's multi-embodiment action encoder: W1 embeds the action, W2 mixes it with the
    timestep features (swish), W3 projects; all three are embodiment-specific.
    """

    def __init__(self, num_embodiments: int, action_dim: int, width: int):
        super().__init__()
        self.width = width
        self.w1 = EmbodimentLinear(num_embodiments, action_dim, width)
        self.w2 = EmbodimentLinear(num_embodiments, 2 * width, width)
        self.w3 = EmbodimentLinear(num_embodiments, width, width)

    def forward(self, actions: torch.Tensor, timestep: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        """``actions [B, H, A]``, ``timestep i64 [B]`` -> ``[B, H, width]``."""
        a = self.w1(actions, embodiment_id)
        tau = sinusoidal_embedding(timestep, self.width).unsqueeze(1).expand(-1, actions.shape[1], -1)
        x = F.silu(self.w2(torch.cat([a, tau], dim=-1), embodiment_id))
        return self.w3(x, embodiment_id)
