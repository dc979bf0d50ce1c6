"""Sizes of the Latent Action Model (LAM), one preset per policy preset.

The LAM is Moto-style (docs/POLICY.md, "Training only"): a frozen ViT-MAE encoder looks at frame t and frame t+k,
an M-Former with 8 learnable queries summarises the motion between them, a down-resampler maps
each query to a 32-D continuous latent (z is 8 x 32), a 128 x 32 VQ codebook quantises it, an
up-resampler and a ViT decoder rebuild frame t+k from frame t plus the quantised motion tokens.

The frozen encoder is either loaded from ``encoder`` (a local path or hub name of a pre-trained
ViT-MAE, the real training path) or, when ``encoder`` is None, built with random weights from
``encoder_config`` (the ``tiny`` preset: a fixed random feature extractor, no download).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lara_g1.core.errors import ConfigError

# ViT-MAE architectures (transformers' ViTMAEConfig keyword arguments) per preset.
_MAE_TINY = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    image_size=64, patch_size=16,
)
_MAE_BASE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    image_size=224, patch_size=16,
)
_MAE_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    image_size=224, patch_size=16,
)

_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        encoder=None, encoder_config=_MAE_TINY,
        mformer_width=64, mformer_heads=4,
        decoder_layers=2, decoder_width=64, decoder_heads=4,
    ),
    "small": dict(
        encoder="facebook/vit-mae-base", encoder_config=_MAE_BASE,
        mformer_width=512, mformer_heads=8,
        decoder_layers=6, decoder_width=512, decoder_heads=8,
    ),
    "paper": dict(
        encoder="facebook/vit-mae-large", encoder_config=_MAE_LARGE,
        mformer_width=768, mformer_heads=12,
        decoder_layers=12, decoder_width=768, decoder_heads=12,
    ),
}

PRESETS = tuple(_PRESETS)


class LamConfigError(ConfigError):
    """A LAM configuration that cannot describe a model."""


@dataclass
class LamConfig:
    """Sizes of the LAM. ``num_queries * latent_dim`` (8 x 32 = 256) is what the alignment targets."""

    encoder: str | None = None
    encoder_config: dict[str, Any] = field(default_factory=lambda: dict(_MAE_TINY))
    mformer_layers: int = 4
    mformer_width: int = 64
    mformer_heads: int = 4
    num_queries: int = 8
    latent_dim: int = 32
    codebook_size: int = 128
    commitment_beta: float = 0.25
    decoder_layers: int = 2
    decoder_width: int = 64
    decoder_heads: int = 4
    # ViT-MAE's ImageNet normalisation; the reconstruction target lives in the same space.
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        self.pixel_mean = tuple(float(v) for v in self.pixel_mean)
        self.pixel_std = tuple(float(v) for v in self.pixel_std)
        self.encoder_config = dict(self.encoder_config)
        for name in ("image_size", "patch_size", "hidden_size"):
            if not isinstance(self.encoder_config.get(name), int):
                raise LamConfigError(f"encoder_config needs an integer {name!r}")
        if self.image_size % self.patch_size:
            raise LamConfigError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for name, width, heads in (("mformer", self.mformer_width, self.mformer_heads),
                                   ("decoder", self.decoder_width, self.decoder_heads)):
            if width % heads:
                raise LamConfigError(f"{name}_width {width} is not divisible by {name}_heads {heads}")
        for name in ("mformer_layers", "decoder_layers", "num_queries", "latent_dim", "codebook_size"):
            if getattr(self, name) < 1:
                raise LamConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def image_size(self) -> int:
        return int(self.encoder_config["image_size"])

    @property
    def patch_size(self) -> int:
        return int(self.encoder_config["patch_size"])

    @property
    def latent_size(self) -> int:
        """Length of the flattened continuous latent z (the alignment target)."""
        return self.num_queries * self.latent_dim

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "LamConfig":
        if name not in _PRESETS:
            raise LamConfigError(f"unknown LAM preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _PRESETS[name].items()}
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pixel_mean"] = list(self.pixel_mean)
        d["pixel_std"] = list(self.pixel_std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LamConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise LamConfigError(f"unknown LAM config fields: {', '.join(unknown)}")
        return cls(**d)
