"""The two torch modules that are exported: the backbone graph and the deployed action head.

:class:`DeployedActionHead` is the whole ``denoising_steps``-step Euler loop of
``LaraPolicy.sample`` for ONE embodiment, unrolled, with everything that does not depend on the
inputs computed once at export time:

- the embodiment-specific layers keep only the deployed embodiment's row (``weight[id]``), so the
  graph has plain MatMuls and none of the other 63 embodiments' weights;
- per step, the sinusoidal timestep features, the DiT's timestep encoder, every AdaLayerNorm's
  scale and shift, the output modulation, and the timestep half of the action encoder's second
  layer (``tau @ W2[width:] + b2``) are constants;
- the cross-attention keys and values of the VL tokens do not change between steps: they are
  computed once per chunk instead of once per step.

It reuses the policy's own submodules (attention projections, feed-forwards, norms) and mirrors
``ActionHead.forward``; the export's parity check against ``LaraPolicy.sample`` (1e-4 in fp32)
holds the two together.

With ``compute_dtype`` fp16/bf16 the network runs in that type while the Euler accumulation and the
graph's inputs and outputs stay fp32 (the strongly typed TensorRT engines are built from these).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from lara_g1.lara.model.dit import block_masks
from lara_g1.lara.model.embodiment_mlp import EmbodimentLinear, EmbodimentMLP
from lara_g1.lara.model.flow import euler_buckets
from lara_g1.lara.model.layers import Attention, sinusoidal_embedding
from lara_g1.lara.model.policy import unpack_vl, vl_mask_channels

BACKBONE_INPUTS = ("pixel_values", "input_ids", "attention_mask")
BACKBONE_OUTPUTS = ("vl_features",)
HEAD_INPUTS = ("vl_features", "state", "noise")
HEAD_OUTPUTS = ("actions",)


class BackboneGraph(nn.Module):
    """``LaraPolicy.backbone_features`` with fp32 inputs/outputs around ``compute_dtype``.

    Both backbones trace as they run: the Eagle backbone writes the image tokens over the
    ``<IMG_CONTEXT>`` positions with a cumsum + gather (no data-dependent shapes) and skips its
    eager-only check of the prompt while tracing; the export's parity check at a batch size other
    than the traced one holds the graph to torch."""

    def __init__(self, policy: nn.Module, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.policy = policy if compute_dtype == torch.float32 else copy.deepcopy(policy).to(compute_dtype)
        self.compute_dtype = compute_dtype

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(self.compute_dtype)
        feats = self.policy.backbone_features(pixel_values, input_ids, attention_mask)
        return feats.to(torch.float32)


class _DeployedLinear(nn.Module):
    """One embodiment's row of an :class:`EmbodimentLinear`: ``x @ W[id] + b[id]``."""

    def __init__(self, layer: EmbodimentLinear, embodiment_id: int):
        super().__init__()
        self.register_buffer("weight", layer.weight.detach()[embodiment_id].clone())
        self.register_buffer("bias", layer.bias.detach()[embodiment_id].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight) + self.bias


class _DeployedMLP(nn.Module):
    def __init__(self, mlp: EmbodimentMLP, embodiment_id: int):
        super().__init__()
        self.layer1 = _DeployedLinear(mlp.layer1, embodiment_id)
        self.layer2 = _DeployedLinear(mlp.layer2, embodiment_id)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x)))


def _split_heads(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    return x.reshape(x.shape[0], -1, heads, head_dim).transpose(1, 2)


def _attend(attn: Attention, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            key_bias: torch.Tensor | None = None) -> torch.Tensor:
    """``Attention.forward`` with the keys and values already projected and split into heads;
    ``key_bias [B, 1, 1, N]`` is added to the scores (the pad mask)."""
    q = _split_heads(attn.to_q(x), attn.heads, attn.head_dim)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(attn.head_dim))
    if key_bias is not None:
        scores = scores + key_bias
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return attn.to_out(out.transpose(1, 2).reshape(x.shape[0], -1, attn.heads * attn.head_dim))


class DeployedActionHead(nn.Module):
    """``(vl_features, state, noise) -> actions``: the unrolled Euler loop for one embodiment."""

    def __init__(self, policy: nn.Module, embodiment_id: int, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        cfg = policy.config
        head = policy.head if compute_dtype == torch.float32 else copy.deepcopy(policy.head).float()
        if not 0 <= embodiment_id < cfg.num_embodiments:
            raise ValueError(f"embodiment id {embodiment_id} is outside the policy's 0..{cfg.num_embodiments - 1}")
        self.compute_dtype = compute_dtype
        self.steps = int(cfg.denoising_steps)
        self.horizon = int(cfg.horizon)
        self.width = int(cfg.width)
        self.channels = vl_mask_channels(cfg)
        self.kinds = list(head.dit.kinds)
        buckets = euler_buckets(self.steps, cfg.num_timestep_buckets)

        self.state_encoder = _DeployedMLP(head.state_encoder, embodiment_id)
        self.action_decoder = _DeployedMLP(head.action_decoder, embodiment_id)
        enc = head.action_encoder
        self.action_w1 = _DeployedLinear(enc.w1, embodiment_id)
        self.action_w3 = _DeployedLinear(enc.w3, embodiment_id)
        w2 = enc.w2.weight.detach()[embodiment_id]                     # [2 * width, width]: [action | tau]
        b2 = enc.w2.bias.detach()[embodiment_id]
        self.register_buffer("action_w2", w2[: enc.width].clone())
        self.dit = head.dit
        self.blocks = head.dit.blocks
        with torch.no_grad():
            t = torch.tensor(buckets, dtype=torch.int64)
            tau = sinusoidal_embedding(t, enc.width)                       # [steps, width]
            self.register_buffer("action_step_bias", (tau @ w2[enc.width:] + b2)[:, None, None, :].clone())
            self.register_buffer("positions", head.position_embedding.weight.detach()[: self.horizon].clone())
            future = head.future_tokens.weight.detach() if head.future_tokens is not None else torch.zeros(0, self.width)
            self.register_buffer("future_tokens", future.clone())
            temb = F.silu(head.dit.timestep_encoder(t))                     # [steps, width]
            mods = [blk.norm1.to_scale_shift(temb).chunk(2, dim=-1) for blk in self.blocks]   # (scale, shift)
            self.register_buffer("block_scale", torch.stack([1 + m[0] for m in mods], 1)[:, :, None, None, :].clone())
            self.register_buffer("block_shift", torch.stack([m[1] for m in mods], 1)[:, :, None, None, :].clone())
            shift, scale = head.dit.proj_out_1(temb).chunk(2, dim=-1)
            self.register_buffer("out_scale", (1 + scale)[:, None, None, :].clone())
            self.register_buffer("out_shift", shift[:, None, None, :].clone())
        self.to(compute_dtype)

    def forward(self, vl_features: torch.Tensor, state: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        dt = self.compute_dtype
        # the pad (and image) masks travel as the last channels (lara.model.policy.pack_vl)
        context, mask, image = unpack_vl(vl_features.to(dt), self.channels)
        bias = {kind: None if m is None else ((1.0 - m) * torch.finfo(dt).min)[:, None, None, :]
                for kind, m in block_masks(self.kinds, mask, image).items()}
        state_token = self.state_encoder(state.to(dt).unsqueeze(1))             # [B, 1, W]
        lead = [state_token]
        if self.future_tokens.shape[0]:
            lead.append(self.future_tokens.unsqueeze(0).expand(state.shape[0], -1, -1))
        # cross-attention keys/values: the same for every step
        kv = {i: (_split_heads(blk.attn.to_k(context), blk.attn.heads, blk.attn.head_dim),
                  _split_heads(blk.attn.to_v(context), blk.attn.heads, blk.attn.head_dim))
              for i, blk in enumerate(self.blocks) if blk.cross}
        actions = noise.to(torch.float32)
        for k in range(self.steps):
            a = self.action_w1(actions.to(dt))
            tokens = self.action_w3(F.silu(torch.matmul(a, self.action_w2) + self.action_step_bias[k])) + self.positions
            x = torch.cat([*lead, tokens], dim=1)
            for i, blk in enumerate(self.blocks):
                h = F.layer_norm(x, (self.width,), eps=blk.norm1.norm.eps) * self.block_scale[k, i] + self.block_shift[k, i]
                if blk.cross:
                    x = x + _attend(blk.attn, h, *kv[i], bias[self.kinds[i]])
                else:
                    hk = _split_heads(blk.attn.to_k(h), blk.attn.heads, blk.attn.head_dim)
                    hv = _split_heads(blk.attn.to_v(h), blk.attn.heads, blk.attn.head_dim)
                    x = x + _attend(blk.attn, h, hk, hv)
                x = x + blk.ff(blk.norm2(x))
            out = F.layer_norm(x, (self.width,), eps=self.dit.norm_out.eps) * self.out_scale[k] + self.out_shift[k]
            velocity = self.action_decoder(self.dit.proj_out_2(out)[:, -self.horizon:])
            actions = actions + velocity.to(torch.float32) * (1.0 / self.steps)
        return actions
