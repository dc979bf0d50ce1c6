"""The VL adapter: LayerNorm, then a small self-attention transformer over the VL tokens
(GR00T N1.5: 4 layers). Its output is what the DiT cross-attends to."""
from __future__ import annotations

import torch
from torch import nn

from lara_g1.lara.model.config import PolicyConfig
from lara_g1.lara.model.layers import EncoderLayer


class VLAdapter(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.vl_dim)
        self.layers = nn.ModuleList(EncoderLayer(config.vl_dim, config.adapter_heads)
                                    for _ in range(config.adapter_layers))

    def forward(self, vl_tokens: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``vl_tokens [B, N, vl_dim]``; ``key_mask [B, N]`` (1 = token, 0 = pad; None: attend to all)."""
        x = self.norm(vl_tokens)
        for layer in self.layers:
            x = layer(x, key_mask=key_mask)
        return x
