"""The LARA release's latent action model: Moto's ``LatentMotionTokenizer``, ported (docs/POLICY.md,
"The LARA release's LAM (Moto tokenizer)").

A second LAM variant next to :class:`~lara_g1.lara.lam.model.LatentActionModel`, with the same
interface for the trainer (``preprocess``, ``forward(frame_t, frame_tk) -> LamOutput``,
``quantizer.counts``, ``trainable_parameters``, ``codebook_usage``), that computes what the
release's tokenizer computes in eval mode, so a LARA checkpoint's tokenizer loads into it::

  cond frame, target frame ──► frozen ViT-MAE (stock transformers, mask_ratio 0) ──► [CLS] + patches
  M-Former: [8 queries | proj(cond) | SEP | proj(target)] + learned positions + token type 0 on
            every token (legacy) ──► pre-LN ViT layers ──► LayerNorm ──► first 8 tokens
  down-resampler (Linear, Tanh, Linear) ──► embed [N, 8, 32]      (the alignment target z)
  VQ (VectorQuantizer2, legacy, straight-through) ──► quant, indices, commit loss
  up-resampler (Linear, Tanh, Linear) ──► decoder: patch embedding of the *cond pixels*
            + query pooling of the 8 up-sampled tokens (added to every patch) + positions
            ──► pre-LN ViT layers ──► LayerNorm ──► 1x1 conv ──► PixelShuffle ──► target frame

Differences from the release, on purpose:

- No ViT-MAE patch shuffle by default. transformers' ``ViTMAEModel`` reorders the patch tokens by
  ``argsort(torch.rand(...))`` at every call even with ``mask_ratio`` 0, so the release's outputs
  depend on the global RNG. Here the noise is an increasing ramp (patches in raster order) unless
  ``noise_cond`` / ``noise_target`` are given, which reproduce a shuffled call exactly.
- No LPIPS term: the loss is ``commit_loss_w * commit + recon_loss_w * MSE``. LPIPS needs VGG16
  ImageNet weights and LPIPS' linear layers that no LARA/Moto checkpoint stores.
- No dropout (the release configures 0.0 everywhere).

Inputs are ImageNet-normalised frames (as LARA's GR00T pipeline feeds them, not Moto's /255
frames); the reconstruction lives in the same space.

Parameter names are this module's own; :func:`release_key_map` maps the release's names
(``latent_motion_tokenizer/model.safetensors``, or ``action_head.latent_motion_tokenizer.*`` in a
GR00T-style checkpoint) to them. Loading: :func:`load_moto_tokenizer`, :func:`moto_from_gr00t_tensors`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from lara_g1.core.config import ConfigModel, config_dataclass
from lara_g1.lara.lam.config import LamConfigError
from lara_g1.lara.lam.io import LamLoadError, read_model_dir
from lara_g1.lara.lam.model import LamOutput
from lara_g1.lara.lam.quantizer import Quantized, VectorQuantizer

# ViTMAEConfig fields that describe the frozen encoder's architecture (copied from a loaded one).
ENCODER_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "image_size", "patch_size", "num_channels", "layer_norm_eps", "hidden_act", "qkv_bias")

_MAE_LARGE = {
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "image_size": 224, "patch_size": 16, "num_channels": 3, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
    "qkv_bias": True,
}

# Prefix of the tokenizer's tensors in a LARA GR00T checkpoint's model*.safetensors.
GR00T_PREFIX = "action_head.latent_motion_tokenizer."
# Tensors of the release's tokenizer that this port does not take: the frozen encoder comes from
# the ViT-MAE directory, and LPIPS is omitted. LARA's own save drops both.
_IGNORED_RELEASE_PREFIXES = ("image_encoder.", "loss_fn_lpips.")


# Mutable: loading a pre-trained encoder stores its architecture in encoder_config.
@config_dataclass(frozen=False)
class MotoLamConfig(ConfigModel):
    """Sizes of the Moto tokenizer. The defaults are the LARA release's
    (``vq_size128_dim32_num8_legacyTrue-vision_MaeLarge-decoder_queryFusionModeAdd_Patch196_useMaskFalse
    -mformer_legacyTrue``): ViT-MAE-Large at 224 px, M-Former 4 x 768, decoder 12 x 768, patch 16."""

    config_error = LamConfigError

    encoder: str | None = None  # where the ViT-MAE was loaded from (informational; saved LAMs hold it)
    encoder_config: dict[str, Any] = Field(default_factory=lambda: dict(_MAE_LARGE))
    # M-Former (release: m_former_config.config)
    mformer_layers: int = Field(4, ge=1)
    mformer_width: int = Field(768, ge=1)
    mformer_heads: int = Field(12, ge=1)
    mformer_mlp: int = Field(3072, ge=1)
    mformer_layer_norm_eps: float = Field(1e-12, gt=0)
    num_queries: int = Field(8, ge=1)  # query_num: latent motion tokens
    num_patches: int = Field(197, ge=2)  # encoder tokens per frame, [CLS] included
    # VectorQuantizer2 (legacy), release: vector_quantizer_config
    codebook_size: int = Field(128, ge=1)  # n_e
    latent_dim: int = Field(32, ge=1)  # e_dim
    commitment_beta: float = Field(0.25, ge=0)  # beta: weights the codebook term in legacy mode
    # decoder (release: decoder_config.config); its image size is the encoder's
    decoder_layers: int = Field(12, ge=1)
    decoder_width: int = Field(768, ge=1)
    decoder_heads: int = Field(12, ge=1)
    decoder_mlp: int = Field(3072, ge=1)
    decoder_layer_norm_eps: float = Field(1e-12, gt=0)
    decoder_patch_size: int = Field(16, ge=1)  # also the PixelShuffle factor (encoder_stride)
    decoder_num_patches: int = Field(196, ge=1)
    # loss weights (the release's perceptual_loss_w has no counterpart: LPIPS is omitted)
    commit_loss_w: float = 1.0
    recon_loss_w: float = 1.0
    # ImageNet statistics: LARA feeds the tokenizer normalised frames.
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @model_validator(mode="after")
    def _sizes_fit_together(self) -> MotoLamConfig:
        for name in ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size"):
            value = self.encoder_config.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"encoder_config needs a positive integer {name!r}, got {value!r}")
        if self.encoder_config.get("num_channels", 3) != 3:
            raise ValueError(f"encoder_config num_channels must be 3, got {self.encoder_config['num_channels']!r}")
        if self.encoder_config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"encoder_config hidden_act must be 'gelu', got {self.encoder_config['hidden_act']!r}")
        size = self.image_size
        for name, patch in (("encoder_config patch_size", self.encoder_config["patch_size"]),
                            ("decoder_patch_size", self.decoder_patch_size)):
            if size % patch:
                raise ValueError(f"image_size {size} is not a multiple of {name} {patch}")
        tokens = (size // self.encoder_config["patch_size"]) ** 2 + 1
        if self.num_patches != tokens:
            raise ValueError(f"num_patches {self.num_patches} must be the encoder's tokens per frame, "
                             f"{tokens} ([CLS] + ({size} / {self.encoder_config['patch_size']})^2)")
        patches = (size // self.decoder_patch_size) ** 2
        if self.decoder_num_patches != patches:
            raise ValueError(f"decoder_num_patches {self.decoder_num_patches} must be "
                             f"({size} / {self.decoder_patch_size})^2 = {patches}")
        for name, width, heads in (("mformer", self.mformer_width, self.mformer_heads),
                                   ("decoder", self.decoder_width, self.decoder_heads)):
            if width % heads:
                raise ValueError(f"{name}_width {width} is not divisible by {name}_heads {heads}")
        return self

    @property
    def image_size(self) -> int:
        return int(self.encoder_config["image_size"])

    @property
    def encoder_width(self) -> int:
        return int(self.encoder_config["hidden_size"])

    @property
    def latent_size(self) -> int:
        """Length of the flattened continuous latent z (the alignment target): 8 x 32 = 256."""
        return self.num_queries * self.latent_dim

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (the pixel statistics as lists)."""
        d = dataclasses.asdict(self)
        d["pixel_mean"] = list(self.pixel_mean)
        d["pixel_std"] = list(self.pixel_std)
        return d


@dataclass
class MotoLamOutput(LamOutput):
    """:class:`LamOutput` plus the release's named outputs and intermediates.

    ``z`` is the release's ``embed``, ``quantized`` its ``quant``, ``reconstruction`` its
    ``recons_pixel_values``; ``loss`` = ``commit_loss_w * commit_loss + recon_loss_w *
    reconstruction_loss`` (the release's loss without LPIPS).
    """

    commit_loss: torch.Tensor  # legacy VQ2: commitment_loss + beta * codebook_loss
    features_t: torch.Tensor  # ViT-MAE last_hidden_state of frame t [N, 1 + P, E]
    features_tk: torch.Tensor  # the same for frame t+k
    motion_tokens: torch.Tensor  # M-Former output at the 8 queries [N, Q, W_m]
    motion_tokens_up: torch.Tensor  # up-resampled quantised tokens [N, Q, W_d]


# ---------------------------------------------------------------------------------------------
# modules


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, w // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class _Block(nn.Module):
    """A pre-LN ViT layer: ``x += attn(norm1(x))``; ``x += fc2(gelu(fc1(norm2(x))))`` (exact GELU)."""

    def __init__(self, width: int, heads: int, mlp: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = _Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class _Resampler(nn.Module):
    """Linear, Tanh, Linear."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim_in, hidden)
        self.fc2 = nn.Linear(hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class MotoMFormer(nn.Module):
    """The M-Former (legacy): queries, cond features, [SEP], target features; one ViT over them."""

    def __init__(self, config: MotoLamConfig) -> None:
        super().__init__()
        w, q, p = config.mformer_width, config.num_queries, config.num_patches
        self.queries = nn.Parameter(torch.randn(1, q, w) * 0.02)
        self.sep = nn.Parameter(torch.randn(1, 1, w) * 0.02)
        self.position = nn.Parameter(torch.randn(1, q + 2 * p + 1, w) * 0.02)
        # Row 1 is stored (checkpoints hold it) but legacy mode gives every token type 0.
        self.token_type = nn.Parameter(torch.randn(2, w) * 0.02)
        self.input_proj = nn.Linear(config.encoder_width, w)
        self.layers = nn.ModuleList(_Block(w, config.mformer_heads, config.mformer_mlp,
                                           config.mformer_layer_norm_eps) for _ in range(config.mformer_layers))
        self.norm = nn.LayerNorm(w, eps=config.mformer_layer_norm_eps)

    def forward(self, features_t: torch.Tensor, features_tk: torch.Tensor) -> torch.Tensor:
        n, q = features_t.shape[0], self.queries.shape[1]
        x = torch.cat([self.queries.expand(n, -1, -1), self.input_proj(features_t),
                       self.sep.expand(n, -1, -1), self.input_proj(features_tk)], dim=1)
        x = x + self.position
        x = x + self.token_type[0]  # legacy: type 0 on every token, the target frame's included
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)[:, :q]


class MotoDecoder(nn.Module):
    """Rebuilds the target frame from the cond frame's pixels and the up-sampled motion tokens."""

    def __init__(self, config: MotoLamConfig) -> None:
        super().__init__()
        w, p = config.decoder_width, config.decoder_patch_size
        self.grid = config.image_size // p
        self.patch_embed = nn.Conv2d(3, w, kernel_size=p, stride=p)
        self.query_pool = nn.Linear(config.num_queries * w, w)  # query fusion "add"
        self.position = nn.Parameter(torch.randn(1, config.decoder_num_patches, w) * 0.02)
        self.layers = nn.ModuleList(_Block(w, config.decoder_heads, config.decoder_mlp,
                                           config.decoder_layer_norm_eps) for _ in range(config.decoder_layers))
        self.norm = nn.LayerNorm(w, eps=config.decoder_layer_norm_eps)
        self.head = nn.Conv2d(w, p * p * 3, kernel_size=1)
        self.unpatchify = nn.PixelShuffle(p)

    def forward(self, frame_t: torch.Tensor, motion_tokens_up: torch.Tensor) -> torch.Tensor:
        n = frame_t.shape[0]
        x = self.patch_embed(frame_t).flatten(2).transpose(1, 2)  # [N, P, W], raster order
        x = x + self.query_pool(motion_tokens_up.reshape(n, 1, -1))
        x = x + self.position
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        x = x.permute(0, 2, 1).reshape(n, x.shape[-1], self.grid, self.grid)
        return self.unpatchify(self.head(x))


class MotoVectorQuantizer(VectorQuantizer):
    """Moto's ``VectorQuantizer2`` (no remap): nearest code by ``|z|^2 + |e|^2 - 2 z.e``, straight-through.

    The losses it returns are the unweighted terms (codebook: ``mean((e - sg(z))^2)``, commitment:
    ``mean((sg(e) - z)^2)``); :meth:`commit_loss` combines them the legacy way. Initialised like
    VQ2 (uniform in +-1/n_e); ``counts`` accumulates code use in training mode.
    """

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = z.reshape(-1, z.shape[-1])
        codes = self.codebook.weight
        distances = (flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1)[None, :]
                     - 2 * flat @ codes.t())
        indices = distances.argmin(dim=1)
        chosen = F.embedding(indices, codes).view_as(z)
        commitment_loss = F.mse_loss(z, chosen.detach())
        codebook_loss = F.mse_loss(chosen, z.detach())
        quantized = z + (chosen - z).detach()
        if self.training:
            with torch.no_grad():
                self.counts += torch.bincount(indices, minlength=self.size)
        return Quantized(quantized, indices.view(z.shape[:-1]), codebook_loss, commitment_loss)

    @staticmethod
    def commit_loss(q: Quantized, beta: float) -> torch.Tensor:
        """Legacy VQ2: ``mean((sg(e) - z)^2) + beta * mean((e - sg(z))^2)`` (beta on the codebook term)."""
        return q.commitment_loss + beta * q.codebook_loss


def build_vit_mae(config: MotoLamConfig) -> nn.Module:
    """A frozen ViT-MAE (transformers' stock ``ViTMAEModel``, ``mask_ratio`` 0, eval, no grad) with
    random weights, built from ``config.encoder_config`` (the weights come from a saved LAM)."""
    from transformers import ViTMAEConfig, ViTMAEModel

    encoder = ViTMAEModel(ViTMAEConfig(**config.encoder_config, mask_ratio=0.0))
    encoder.requires_grad_(False)
    return encoder.eval()


def load_vit_mae(path: str | Path) -> nn.Module:
    """The frozen ViT-MAE from a ``facebook/vit-mae-*``-layout directory (``vit.*`` tensors; its
    ``decoder.*`` is ignored), ``mask_ratio`` 0, eval, no grad."""
    from transformers import ViTMAEModel

    if not (Path(path) / "config.json").is_file():
        raise LamLoadError(f"{path} is not a ViT-MAE directory: config.json is missing")
    try:
        encoder = ViTMAEModel.from_pretrained(str(path), mask_ratio=0.0)
    except (OSError, ValueError) as e:
        raise LamLoadError(f"{path}: cannot load the ViT-MAE: {e}") from e
    encoder.requires_grad_(False)
    return encoder.eval()


class MotoLatentActionModel(nn.Module):
    """The LARA release's tokenizer as a LAM. ``forward(frame_t, frame_tk)`` takes frames from
    :meth:`preprocess` (ImageNet-normalised).

    The loss omits the release's LPIPS term (``perceptual_loss_w * LPIPS_vgg``): its VGG16 and
    linear-layer weights are in no LARA/Moto checkpoint. ``loss = commit_loss_w * commit +
    recon_loss_w * MSE(target, reconstruction)``.
    """

    def __init__(self, config: MotoLamConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else build_vit_mae(config)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.mformer = MotoMFormer(config)
        self.down_resampler = _Resampler(config.mformer_width, config.decoder_width, config.latent_dim)
        self.quantizer = MotoVectorQuantizer(config.codebook_size, config.latent_dim)
        self.up_resampler = _Resampler(config.latent_dim, config.latent_dim, config.decoder_width)
        self.decoder = MotoDecoder(config)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def train(self, mode: bool = True) -> MotoLatentActionModel:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, whatever the rest of the model does
        return self

    def preprocess(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 frames [B, H, W, 3] -> float [B, 3, S, S]: ``/255``, resized to the model's size
        (bilinear, antialiased) if needed, then ``(x - mean) / std`` with ImageNet statistics.

        At the model's size this is bit for bit LARA's ``GR00TTransform`` normalisation; LARA's 95 %
        centre crop and resize to 224 px are upstream image augmentation, not part of this step.
        """
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [B, H, W, 3], got {tuple(frames.shape)} {frames.dtype}")
        x = frames.to(self.pixel_mean.device).permute(0, 3, 1, 2).float() / 255.0
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std

    def encode_frames(self, pixels: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen ViT-MAE features [N, 1 + P, E]. Without ``noise`` the patches stay in raster order;
        with it (``[N, P]``) they are in ``argsort(noise)`` order, as the release's random draw gives."""
        if noise is None:
            n, p = pixels.shape[0], self.config.num_patches - 1
            noise = torch.arange(p, device=pixels.device, dtype=torch.float32).expand(n, p)
        with torch.no_grad():
            return self.encoder(pixel_values=pixels, noise=noise).last_hidden_state

    def encode(self, frame_t: torch.Tensor, frame_tk: torch.Tensor, noise_cond: torch.Tensor | None = None,
               noise_target: torch.Tensor | None = None) -> torch.Tensor:
        """The continuous latent motion tokens z (``embed``) [N, Q, D]."""
        return self.down_resampler(self.mformer(self.encode_frames(frame_t, noise_cond),
                                                self.encode_frames(frame_tk, noise_target)))

    def forward(self, frame_t: torch.Tensor, frame_tk: torch.Tensor, noise_cond: torch.Tensor | None = None,
                noise_target: torch.Tensor | None = None) -> MotoLamOutput:
        features_t = self.encode_frames(frame_t, noise_cond)
        features_tk = self.encode_frames(frame_tk, noise_target)
        motion_tokens = self.mformer(features_t, features_tk)
        z = self.down_resampler(motion_tokens)
        q = self.quantizer(z)
        commit_loss = self.quantizer.commit_loss(q, self.config.commitment_beta)
        up = self.up_resampler(q.quantized)
        reconstruction = self.decoder(frame_t, up)
        reconstruction_loss = F.mse_loss(frame_tk, reconstruction)
        loss = self.config.commit_loss_w * commit_loss + self.config.recon_loss_w * reconstruction_loss
        return MotoLamOutput(z=z, quantized=q.quantized, indices=q.indices, reconstruction=reconstruction,
                             reconstruction_loss=reconstruction_loss, codebook_loss=q.codebook_loss,
                             commitment_loss=q.commitment_loss, loss=loss, commit_loss=commit_loss,
                             features_t=features_t, features_tk=features_tk, motion_tokens=motion_tokens,
                             motion_tokens_up=up)

    def decode_indices(self, frame_t: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Frame t+k from frame t and code indices [N, Q] (the release's ``decode_image``)."""
        codes = self.quantizer.codebook(indices)
        return self.decoder(frame_t, self.up_resampler(codes))

    @staticmethod
    def alignment_target(z: torch.Tensor, future_frames: int = 1) -> torch.Tensor:
        """LARA's ``target_motion_embed``: z [B * F', Q, D] -> mean over the F' future frames [B, Q * D]."""
        return z.reshape(-1, future_frames, z.shape[1] * z.shape[2]).mean(1)

    def codebook_usage(self, indices: torch.Tensor | None = None) -> dict[str, float]:
        return self.quantizer.usage(indices)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.") and p.requires_grad]


# ---------------------------------------------------------------------------------------------
# the release's format


def release_key_map(config: MotoLamConfig) -> dict[str, str]:
    """The release's tensor names (``latent_motion_tokenizer/model.safetensors``, transformers 4.x
    ViT names) -> this module's state_dict names; every non-encoder tensor but ``quantizer.counts``.

    For a GR00T-style checkpoint prefix the release names with :data:`GR00T_PREFIX`.
    """
    m: dict[str, str] = {
        "m_former.embeddings.latent_motion_token": "mformer.queries",
        "m_former.embeddings.sep_token": "mformer.sep",
        "m_former.embeddings.position_embeddings": "mformer.position",
        "m_former.embeddings.token_type_embeddings": "mformer.token_type",
        "m_former.embeddings.projection.weight": "mformer.input_proj.weight",
        "m_former.embeddings.projection.bias": "mformer.input_proj.bias",
        "m_former.layernorm.weight": "mformer.norm.weight",
        "m_former.layernorm.bias": "mformer.norm.bias",
        "vector_quantizer.embedding.weight": "quantizer.codebook.weight",
        "decoder.transformer.embeddings.position_embeddings": "decoder.position",
        "decoder.transformer.embeddings.patch_embeddings.projection.weight": "decoder.patch_embed.weight",
        "decoder.transformer.embeddings.patch_embeddings.projection.bias": "decoder.patch_embed.bias",
        "decoder.transformer.embeddings.query_pooling_layer.weight": "decoder.query_pool.weight",
        "decoder.transformer.embeddings.query_pooling_layer.bias": "decoder.query_pool.bias",
        "decoder.transformer.layernorm.weight": "decoder.norm.weight",
        "decoder.transformer.layernorm.bias": "decoder.norm.bias",
        "decoder.decoder.0.weight": "decoder.head.weight",
        "decoder.decoder.0.bias": "decoder.head.bias",
    }
    for release, ours in (("vq_down_resampler", "down_resampler"), ("vq_up_resampler", "up_resampler")):
        for index, fc in (("0", "fc1"), ("2", "fc2")):
            for kind in ("weight", "bias"):
                m[f"{release}.{index}.{kind}"] = f"{ours}.{fc}.{kind}"
    vit_layer = {
        "attention.attention.query": "attn.q", "attention.attention.key": "attn.k",
        "attention.attention.value": "attn.v", "attention.output.dense": "attn.out",
        "intermediate.dense": "fc1", "output.dense": "fc2",
        "layernorm_before": "norm1", "layernorm_after": "norm2",
    }
    for release, ours, layers in (("m_former.encoder.layer", "mformer.layers", config.mformer_layers),
                                  ("decoder.transformer.encoder.layer", "decoder.layers", config.decoder_layers)):
        for i in range(layers):
            for sub_release, sub_ours in vit_layer.items():
                for kind in ("weight", "bias"):
                    m[f"{release}.{i}.{sub_release}.{kind}"] = f"{ours}.{i}.{sub_ours}.{kind}"
    return m


def _node(raw: dict[str, Any], key: str, source: str, target: str) -> dict[str, Any]:
    node = raw.get(key)
    if not isinstance(node, dict):
        raise LamLoadError(f"{source}: {key} is missing or not an object")
    if not str(node.get("_target_", "")).endswith(target):
        raise LamLoadError(f"{source}: {key}._target_ is {node.get('_target_')!r}, expected ...{target}")
    return node


def _vit_node(raw: dict[str, Any], key: str, source: str, target: str) -> dict[str, Any]:
    config = _node(raw, key, source, target).get("config")
    if not isinstance(config, dict):
        raise LamLoadError(f"{source}: {key}.config is missing or not an object")
    for name, wanted in (("hidden_act", "gelu"), ("qkv_bias", True)):
        if config.get(name, wanted) != wanted:
            raise LamLoadError(f"{source}: {key}.config.{name} is {config[name]!r}; the port supports {wanted!r}")
    return config


def _get(node: dict[str, Any], name: str, where: str) -> Any:
    if name not in node:
        raise LamLoadError(f"{where}: no {name!r}")
    return node[name]


def config_from_release(raw: dict[str, Any], encoder_config: dict[str, Any], source: str = "config.json",
                        encoder: str | None = None) -> MotoLamConfig:
    """A :class:`MotoLamConfig` from the release's tokenizer config (the ``PretrainedConfig`` JSON whose
    ``*_config`` entries are hydra nodes; their sizes are read, nothing is instantiated) and the frozen
    encoder's architecture (:data:`ENCODER_FIELDS`). Settings the port does not implement are errors."""
    if not isinstance(raw, dict):
        raise LamLoadError(f"{source}: not a JSON object")
    if raw.get("model_type", "latent_motion_tokenizer") != "latent_motion_tokenizer":
        raise LamLoadError(f"{source}: model_type {raw.get('model_type')!r}, expected 'latent_motion_tokenizer'")
    _node(raw, "image_encoder_config", source, "ViTMAEModel.from_pretrained")
    mformer_node = _node(raw, "m_former_config", source, "MFormer")
    if mformer_node.get("add_pooling_layer", False):
        raise LamLoadError(f"{source}: m_former_config.add_pooling_layer is true; the port has no pooler")
    mf = _vit_node(raw, "m_former_config", source, "MFormer")
    if mf.get("legacy", True) is not True:
        raise LamLoadError(f"{source}: m_former_config.config.legacy is {mf['legacy']!r}; only the legacy "
                           "M-Former (token type 0 on every token) is ported")
    vq = _node(raw, "vector_quantizer_config", source, "VectorQuantizer2")
    if vq.get("remap") is not None or vq.get("legacy", True) is not True:
        raise LamLoadError(f"{source}: vector_quantizer_config with remap {vq.get('remap')!r}, legacy "
                           f"{vq.get('legacy', True)!r}; the port supports remap null, legacy true")
    dec = _vit_node(raw, "decoder_config", source, "LatentMotionDecoder")
    for name, wanted in (("is_io_hidden_states", False), ("query_fusion_mode", "add"), ("use_mask_token", False),
                         ("num_channels", 3)):
        if dec.get(name, wanted) != wanted:
            raise LamLoadError(f"{source}: decoder_config.config.{name} is {dec[name]!r}; the port supports {wanted!r}")
    for name, wanted in (("hidden_state_decoder_config", None), ("use_abs_recons_loss", False)):
        if raw.get(name, wanted) != wanted:
            raise LamLoadError(f"{source}: {name} is {raw[name]!r}; the port supports {wanted!r}")
    where_mf, where_vq, where_dec = (f"{source}: m_former_config.config", f"{source}: vector_quantizer_config",
                                     f"{source}: decoder_config.config")
    patch = _get(dec, "patch_size", where_dec)
    if dec.get("encoder_stride", patch) != patch:
        raise LamLoadError(f"{where_dec}: encoder_stride {dec['encoder_stride']} differs from patch_size {patch}")
    if _get(dec, "query_num", where_dec) != _get(mf, "query_num", where_mf):
        raise LamLoadError(f"{source}: decoder query_num {dec['query_num']} differs from the M-Former's {mf['query_num']}")
    if _get(mf, "input_hidden_size", where_mf) != encoder_config.get("hidden_size"):
        raise LamLoadError(f"{where_mf}: input_hidden_size {mf['input_hidden_size']} is not the image encoder's "
                           f"hidden_size {encoder_config.get('hidden_size')}")
    if _get(dec, "image_size", where_dec) != encoder_config.get("image_size"):
        raise LamLoadError(f"{where_dec}: image_size {dec['image_size']} is not the image encoder's "
                           f"{encoder_config.get('image_size')}")
    codebook_dim = raw.get("codebook_dim", vq.get("e_dim"))
    if codebook_dim != _get(vq, "e_dim", where_vq):
        raise LamLoadError(f"{source}: codebook_dim {codebook_dim} differs from vector_quantizer e_dim {vq['e_dim']}")
    values = {
        "encoder": encoder, "encoder_config": dict(encoder_config),
        "mformer_layers": _get(mf, "num_hidden_layers", where_mf), "mformer_width": _get(mf, "hidden_size", where_mf),
        "mformer_heads": _get(mf, "num_attention_heads", where_mf),
        "mformer_mlp": _get(mf, "intermediate_size", where_mf),
        "mformer_layer_norm_eps": mf.get("layer_norm_eps", 1e-12),
        "num_queries": mf["query_num"], "num_patches": _get(mf, "num_patches", where_mf),
        "codebook_size": _get(vq, "n_e", where_vq), "latent_dim": vq["e_dim"],
        "commitment_beta": _get(vq, "beta", where_vq),
        "decoder_layers": _get(dec, "num_hidden_layers", where_dec),
        "decoder_width": _get(dec, "hidden_size", where_dec),
        "decoder_heads": _get(dec, "num_attention_heads", where_dec),
        "decoder_mlp": _get(dec, "intermediate_size", where_dec),
        "decoder_layer_norm_eps": dec.get("layer_norm_eps", 1e-12),
        "decoder_patch_size": patch, "decoder_num_patches": _get(dec, "num_patches", where_dec),
        "commit_loss_w": raw.get("commit_loss_w", 1.0), "recon_loss_w": raw.get("recon_loss_w", 1.0),
    }
    try:
        return MotoLamConfig.from_dict(values, source)
    except LamConfigError as e:
        raise LamLoadError(str(e)) from e


def load_release_state(model: MotoLatentActionModel, tensors: dict[str, torch.Tensor], prefix: str = "",
                       source: str = "model.safetensors") -> MotoLatentActionModel:
    """Copy the release's tokenizer tensors (names ``prefix`` + release name) into ``model``.

    Every mapped tensor must be there with the right shape, and no other tensor under ``prefix``
    (``image_encoder.*`` and ``loss_fn_lpips.*`` excepted: see the module doc); otherwise
    :class:`LamLoadError` names the tensor and both shapes.
    """
    key_map = release_key_map(model.config)
    expected = model.state_dict()
    ours = {}
    for release, name in key_map.items():
        key = prefix + release
        if key not in tensors:
            raise LamLoadError(f"{source}: missing tensor {key!r} (shape {tuple(expected[name].shape)} expected)")
        tensor = tensors[key]
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise LamLoadError(f"{source}: {key!r} has shape {tuple(tensor.shape)}, the config needs "
                               f"{tuple(expected[name].shape)}")
        ours[name] = tensor
    extra = sorted(k for k in tensors if k.startswith(prefix) and k[len(prefix):] not in key_map
                   and not k[len(prefix):].startswith(_IGNORED_RELEASE_PREFIXES))
    if extra:
        raise LamLoadError(f"{source}: unexpected tensor {extra[0]!r} with shape {tuple(tensors[extra[0]].shape)} "
                           f"({len(extra)} unexpected in all)")
    with torch.no_grad():
        for name, tensor in ours.items():
            expected[name].copy_(tensor.to(expected[name].dtype))
    return model


def moto_from_gr00t_tensors(tensors: dict[str, torch.Tensor], tokenizer_config: dict[str, Any],
                            vit_mae_dir: str | Path, prefix: str = GR00T_PREFIX,
                            source: str = "GR00T checkpoint") -> MotoLatentActionModel:
    """The tokenizer from a LARA GR00T checkpoint's tensors (``action_head.latent_motion_tokenizer.*``;
    other tensors, ``backbone.*`` etc., are ignored), the tokenizer's ``config.json`` as a dict, and
    the ViT-MAE directory (``facebook/vit-mae-*`` layout), in eval mode."""
    encoder = load_vit_mae(vit_mae_dir)
    encoder_config = {name: getattr(encoder.config, name) for name in ENCODER_FIELDS}
    config = config_from_release(tokenizer_config, encoder_config, f"{source} (tokenizer config)",
                                 encoder=str(vit_mae_dir))
    model = MotoLatentActionModel(config, encoder=encoder)
    return load_release_state(model, tensors, prefix, source).eval()


def load_moto_tokenizer(tokenizer_dir: str | Path, vit_mae_dir: str | Path) -> MotoLatentActionModel:
    """The tokenizer as LARA saves it (``config.json`` + ``model.safetensors``, e.g. a checkpoint's
    ``latent_motion_tokenizer/``) with its frozen ViT-MAE from ``vit_mae_dir``, in eval mode. The
    config's own encoder path (a training machine's) is not used."""
    from safetensors.torch import load_file

    raw, weights_file = read_model_dir(Path(tokenizer_dir), "a tokenizer directory")
    return moto_from_gr00t_tensors(load_file(str(weights_file)), raw, vit_mae_dir, prefix="",
                                   source=str(weights_file))
