"""The Latent Action Model (Moto-style; docs/POLICY.md, "Training only").

frame t, frame t+k ──► frozen ViT-MAE ──► M-Former (learnable queries attend to both frames)
  ──► down-resampler ──► z [B, 8, 32] (continuous; the alignment target)
  ──► VQ codebook 128 x 32 (straight-through) ──► up-resampler
  ──► ViT decoder over [motion tokens, frame-t patches] ──► frame t+k

The decoder predicts frame t+k as frame t plus a predicted change, so everything it must add to
frame t has to come through the motion tokens. Pixels are compared in the encoder's normalised
space (ViT-MAE's ImageNet mean and std).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lara_g1.lara.lam.config import LamConfig
from lara_g1.lara.lam.quantizer import VectorQuantizer

# ViTMAEConfig fields that describe the architecture; copied back from a loaded encoder.
_ENCODER_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                   "image_size", "patch_size")


@dataclass
class LamOutput:
    z: torch.Tensor  # [B, Q, D] continuous latent, before quantisation
    quantized: torch.Tensor  # [B, Q, D] straight-through quantised latent
    indices: torch.Tensor  # [B, Q] code ids
    reconstruction: torch.Tensor  # [B, 3, S, S] predicted frame t+k, normalised pixels
    reconstruction_loss: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor  # reconstruction + codebook + beta * commitment


def _transformer(layers: int, width: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=width, nhead=heads, dim_feedforward=4 * width, dropout=0.0,
        activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, num_layers=layers, norm=nn.LayerNorm(width),
                                 enable_nested_tensor=False)


def build_encoder(config: LamConfig, load_weights: bool = True) -> nn.Module:
    """The frozen ViT-MAE encoder, with masking off (``mask_ratio`` 0) so every patch is seen.

    With ``config.encoder`` set and ``load_weights`` the weights come from that path or hub name
    and ``config.encoder_config`` is updated to the loaded architecture; otherwise the encoder is
    built from ``config.encoder_config`` with random weights (later overwritten when a saved LAM
    is loaded).
    """
    from transformers import ViTMAEConfig, ViTMAEModel

    if config.encoder and load_weights:
        encoder = ViTMAEModel.from_pretrained(config.encoder, mask_ratio=0.0)
        config.encoder_config = {name: getattr(encoder.config, name) for name in _ENCODER_FIELDS}
    else:
        encoder = ViTMAEModel(ViTMAEConfig(**config.encoder_config, mask_ratio=0.0))
    encoder.requires_grad_(False)
    return encoder.eval()


class MFormer(nn.Module):
    """Learnable queries that attend to the encoder features of frame t and frame t+k."""

    def __init__(self, config: LamConfig, feature_dim: int) -> None:
        super().__init__()
        w = config.mformer_width
        self.input_proj = nn.Linear(feature_dim, w)
        self.frame_embedding = nn.Parameter(torch.randn(2, w) * 0.02)
        self.queries = nn.Parameter(torch.randn(config.num_queries, w) * 0.02)
        self.transformer = _transformer(config.mformer_layers, w, config.mformer_heads)

    def forward(self, features_t: torch.Tensor, features_tk: torch.Tensor) -> torch.Tensor:
        b = features_t.shape[0]
        frames = torch.cat([self.input_proj(features_t) + self.frame_embedding[0],
                            self.input_proj(features_tk) + self.frame_embedding[1]], dim=1)
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)
        out = self.transformer(torch.cat([queries, frames], dim=1))
        return out[:, : self.queries.shape[0]]


class PixelDecoder(nn.Module):
    """ViT decoder: frame-t patches plus motion tokens -> the change from frame t to frame t+k."""

    def __init__(self, config: LamConfig) -> None:
        super().__init__()
        w, p = config.decoder_width, config.patch_size
        self.patch_size = p
        self.grid = config.image_size // p
        self.patch_embed = nn.Conv2d(3, w, kernel_size=p, stride=p)
        self.patch_position = nn.Parameter(torch.randn(self.grid * self.grid, w) * 0.02)
        self.motion_position = nn.Parameter(torch.randn(config.num_queries, w) * 0.02)
        self.transformer = _transformer(config.decoder_layers, w, config.decoder_heads)
        self.head = nn.Linear(w, p * p * 3)

    def forward(self, frame_t: torch.Tensor, motion_tokens: torch.Tensor) -> torch.Tensor:
        b, q = frame_t.shape[0], motion_tokens.shape[1]
        patches = self.patch_embed(frame_t).flatten(2).transpose(1, 2) + self.patch_position
        out = self.transformer(torch.cat([motion_tokens + self.motion_position, patches], dim=1))
        delta = self.head(out[:, q:])  # [B, N, p*p*3]
        g, p = self.grid, self.patch_size
        delta = delta.view(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, g * p, g * p)
        return frame_t + delta


class LatentActionModel(nn.Module):
    """The LAM. ``forward(frame_t, frame_tk)`` takes frames from :meth:`preprocess`."""

    def __init__(self, config: LamConfig, load_encoder_weights: bool = True) -> None:
        super().__init__()
        self.encoder = build_encoder(config, load_weights=load_encoder_weights)
        self.config = config
        self.mformer = MFormer(config, feature_dim=config.encoder_config["hidden_size"])
        self.down_resampler = nn.Sequential(nn.LayerNorm(config.mformer_width),
                                            nn.Linear(config.mformer_width, config.latent_dim))
        self.quantizer = VectorQuantizer(config.codebook_size, config.latent_dim)
        self.up_resampler = nn.Linear(config.latent_dim, config.decoder_width)
        self.decoder = PixelDecoder(config)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1),
                             persistent=False)

    def train(self, mode: bool = True) -> "LatentActionModel":
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, whatever the rest of the model does
        return self

    def preprocess(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 frames [B, H, W, 3] -> float [B, 3, S, S] resized and normalised for the encoder."""
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [B, H, W, 3], got {tuple(frames.shape)} "
                             f"{frames.dtype}")
        x = frames.to(self.pixel_mean.device).permute(0, 3, 1, 2).float() / 255.0
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frozen ViT-MAE features [B, 1 + N, hidden], patches in their natural order."""
        b = pixels.shape[0]
        n = (self.config.image_size // self.config.patch_size) ** 2
        # ViT-MAE shuffles patches by argsort(noise); increasing noise keeps them in order.
        order = torch.arange(n, device=pixels.device, dtype=torch.float32).expand(b, n)
        with torch.no_grad():
            return self.encoder(pixel_values=pixels, noise=order).last_hidden_state

    def encode(self, frame_t: torch.Tensor, frame_tk: torch.Tensor) -> torch.Tensor:
        """The continuous latent z [B, Q, D] of the motion from frame t to frame t+k."""
        features = self.encode_frames(torch.cat([frame_t, frame_tk], dim=0))
        features_t, features_tk = features.chunk(2, dim=0)
        return self.down_resampler(self.mformer(features_t, features_tk))

    def forward(self, frame_t: torch.Tensor, frame_tk: torch.Tensor) -> LamOutput:
        z = self.encode(frame_t, frame_tk)
        q = self.quantizer(z)
        reconstruction = self.decoder(frame_t, self.up_resampler(q.quantized))
        reconstruction_loss = F.mse_loss(reconstruction, frame_tk)
        loss = (reconstruction_loss + q.codebook_loss
                + self.config.commitment_beta * q.commitment_loss)
        return LamOutput(z=z, quantized=q.quantized, indices=q.indices,
                         reconstruction=reconstruction, reconstruction_loss=reconstruction_loss,
                         codebook_loss=q.codebook_loss, commitment_loss=q.commitment_loss,
                         loss=loss)

    def codebook_usage(self, indices: torch.Tensor | None = None) -> dict[str, float]:
        return self.quantizer.usage(indices)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters()
                if not name.startswith("encoder.") and p.requires_grad]


def count_parameters(config: LamConfig) -> dict[str, int]:
    """Parameter counts of a LAM built on the meta device (nothing allocated, nothing loaded)."""
    with torch.device("meta"):
        lam = LatentActionModel(config, load_encoder_weights=False)
    parts = {name: sum(p.numel() for p in module.parameters())
             for name, module in lam.named_children()}
    parts["trainable"] = sum(p.numel() for p in lam.trainable_parameters())
    parts["total"] = sum(p.numel() for p in lam.parameters())
    return parts
