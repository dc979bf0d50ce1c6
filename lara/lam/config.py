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
from typing import Any

from pydantic import Field, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass
from lara_g1.core.errors import ConfigError

# ViT-MAE architectures (transformers' ViTMAEConfig keyword arguments) per preset.
_MAE_TINY = {
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
    "image_size": 64, "patch_size": 16,
}
_MAE_BASE = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "image_size": 224, "patch_size": 16,
}
_MAE_LARGE = {
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "image_size": 224, "patch_size": 16,
}

_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "encoder": None, "encoder_config": _MAE_TINY,
        "mformer_width": 64, "mformer_heads": 4,
        "decoder_layers": 2, "decoder_width": 64, "decoder_heads": 4,
    },
    "small": {
        "encoder": "facebook/vit-mae-base", "encoder_config": _MAE_BASE,
        "mformer_width": 512, "mformer_heads": 8,
        "decoder_layers": 6, "decoder_width": 512, "decoder_heads": 8,
    },
    "paper": {
        "encoder": "facebook/vit-mae-large", "encoder_config": _MAE_LARGE,
        "mformer_width": 768, "mformer_heads": 12,
        "decoder_layers": 12, "decoder_width": 768, "decoder_heads": 12,
    },
}

PRESETS = tuple(_PRESETS)


class LamConfigError(ConfigError):
    """A LAM configuration that cannot describe a model."""


# Mutable: loading a pre-trained encoder stores its architecture in encoder_config.
@config_dataclass(frozen=False)
class LamConfig(ConfigModel):
    """Sizes of the LAM. ``num_queries * latent_dim`` (8 x 32 = 256) is what the alignment targets."""

    config_error = LamConfigError

    encoder: str | None = None
    encoder_config: dict[str, Any] = Field(default_factory=lambda: dict(_MAE_TINY))
    mformer_layers: int = Field(4, ge=1)
    mformer_width: int = Field(64, ge=1)
    mformer_heads: int = Field(4, ge=1)
    num_queries: int = Field(8, ge=1)
    latent_dim: int = Field(32, ge=1)
    codebook_size: int = Field(128, ge=1)
    commitment_beta: float = 0.25
    decoder_layers: int = Field(2, ge=1)
    decoder_width: int = Field(64, ge=1)
    decoder_heads: int = Field(4, ge=1)
    # ViT-MAE's ImageNet normalisation; the reconstruction target lives in the same space.
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @model_validator(mode="after")
    def _sizes_fit_together(self) -> LamConfig:
        for name in ("image_size", "patch_size", "hidden_size"):
            value = self.encoder_config.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"encoder_config needs a positive integer {name!r}, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for name, width, heads in (("mformer", self.mformer_width, self.mformer_heads),
                                   ("decoder", self.decoder_width, self.decoder_heads)):
            if width % heads:
                raise ValueError(f"{name}_width {width} is not divisible by {name}_heads {heads}")
        return self

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
    def from_preset(cls, name: str, **overrides: Any) -> LamConfig:
        if name not in _PRESETS:
            raise LamConfigError(f"unknown LAM preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls.from_dict({**_PRESETS[name], **overrides}, f"LAM preset {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (the pixel statistics as lists)."""
        d = dataclasses.asdict(self)
        d["pixel_mean"] = list(self.pixel_mean)
        d["pixel_std"] = list(self.pixel_std)
        return d
