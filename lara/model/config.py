"""The policy's configuration: one flat dataclass, size presets in ``configs/presets/*.yaml``.

A preset file holds only the fields it changes; everything else keeps the defaults below.
``PolicyConfig.from_preset("tiny", horizon=16)`` applies overrides on top of the preset, and
every construction path (preset, dict, bundle) runs :meth:`PolicyConfig.validate`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from lara_g1.core.config import config_path
from lara_g1.core.errors import ConfigError  # raised here for configurations that cannot build a model

PRESETS = ("tiny", "small", "paper")
BACKBONES = ("standin", "eagle")


@dataclass
class PolicyConfig:
    preset: str = "custom"
    embodiment: str = "g1"

    # action chunk and flow
    horizon: int = 8
    denoising_steps: int = 4
    num_timestep_buckets: int = 1000
    noise_beta_alpha: float = 1.5   # training t = (noise_s - Beta(alpha, 1)) / noise_s
    noise_s: float = 0.999

    # observation
    image_size: int = 224
    cameras: list[str] = field(default_factory=lambda: ["head"])
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    default_instruction: str = "do the task"
    max_text_len: int = 16

    # padding of the embodiment-specific parts
    max_state_dim: int = 64
    max_action_dim: int = 32
    num_embodiments: int = 64

    # vision-language backbone
    backbone: str = "standin"            # "standin" | "eagle"
    vl_dim: int = 128                    # width of the backbone's features
    tune_backbone: bool = True           # False: frozen (requires_grad off)
    # stand-in backbone (tiny / small)
    standin_layers: int = 2
    standin_heads: int = 4
    standin_patch_size: int = 32
    vocab_size: int = 259                # byte tokenizer: 0 pad, 1 bos, 2 eos, 3..258 bytes
    # Eagle-2-class backbone (transformers)
    backbone_path: str | None = None     # local dir or hub name, used when no hf config is stored
    backbone_select_layer: int = 12      # features = output of this LLM decoder layer (1-based)
    backbone_hf_config: dict | None = None  # the transformers config, stored so a bundle rebuilds offline

    # adapter over the VL tokens
    adapter_layers: int = 1
    adapter_heads: int = 4

    # DiT action head
    cross_attention_dim: int = 128
    dit_layers: int = 4
    dit_heads: int = 4
    dit_head_dim: int = 32
    dit_output_dim: int = 128
    hidden_size: int = 128               # hidden width of the embodiment-specific MLPs
    max_seq_len: int = 1024              # learned action position embeddings
    timestep_embed_dim: int = 256

    @property
    def width(self) -> int:
        """The DiT's inner width (heads x head_dim)."""
        return self.dit_heads * self.dit_head_dim

    @property
    def hidden_block(self) -> int:
        """The DiT block whose output the alignment loss reads (L-2, 0-based; 14 of 16)."""
        return max(self.dit_layers - 2, 0)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "PolicyConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; presets: {list(PRESETS)}")
        path = config_path(f"presets/{name}.yaml")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of field -> value")
        return cls.from_dict({**raw, "preset": name, **overrides}, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "PolicyConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown policy config fields {unknown}")
        cfg = cls(**raw)
        cfg.validate(source)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "PolicyConfig":
        return PolicyConfig.from_dict({**self.to_dict(), **changes})

    def validate(self, source: str = "<config>") -> None:
        def fail(msg: str) -> ConfigError:
            return ConfigError(f"{source}: {msg}")

        positive = ("horizon", "denoising_steps", "num_timestep_buckets", "image_size", "max_text_len",
                    "max_state_dim", "max_action_dim", "num_embodiments", "vl_dim", "cross_attention_dim",
                    "dit_layers", "dit_heads", "dit_head_dim", "dit_output_dim", "hidden_size",
                    "max_seq_len", "timestep_embed_dim", "adapter_heads", "vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise fail(f"{name} must be a positive integer, got {value!r}")
        for name in ("preset", "embodiment", "default_instruction", "backbone"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise fail(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not isinstance(self.tune_backbone, bool):
            raise fail(f"tune_backbone must be true or false, got {self.tune_backbone!r}")
        if not isinstance(self.adapter_layers, int) or self.adapter_layers < 0:
            raise fail(f"adapter_layers must be >= 0, got {self.adapter_layers}")
        if self.backbone not in BACKBONES:
            raise fail(f"backbone must be one of {list(BACKBONES)}, got {self.backbone!r}")
        if self.num_timestep_buckets % self.denoising_steps:
            raise fail(f"denoising_steps {self.denoising_steps} must divide num_timestep_buckets "
                       f"{self.num_timestep_buckets} (buckets 0, 250, 500, 750 for 4 steps)")
        if self.horizon + 1 > self.max_seq_len:
            raise fail(f"horizon {self.horizon} exceeds max_seq_len {self.max_seq_len}")
        if self.timestep_embed_dim % 2:
            raise fail(f"timestep_embed_dim must be even, got {self.timestep_embed_dim}")
        if self.width % 2:
            raise fail(f"the DiT width (dit_heads x dit_head_dim = {self.width}) must be even")
        if self.cross_attention_dim != self.vl_dim:
            raise fail(f"cross_attention_dim {self.cross_attention_dim} must equal vl_dim {self.vl_dim} "
                       f"(the DiT cross-attends to the adapted backbone features)")
        if self.vl_dim % self.adapter_heads:
            raise fail(f"adapter_heads {self.adapter_heads} must divide vl_dim {self.vl_dim}")
        if not isinstance(self.cameras, list) or len(self.cameras) != 1 or not all(
                isinstance(c, str) and c for c in self.cameras):
            raise fail(f"cameras must be a list of exactly one camera name (the backbone takes one "
                       f"frame), got {self.cameras!r}")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if not isinstance(value, list) or len(value) != 3:
                raise fail(f"{name} must be a list of 3 floats, got {value!r}")
        if any(s <= 0 for s in self.image_std):
            raise fail(f"image_std must be positive, got {self.image_std}")
        if not 0 < self.noise_s <= 1 or self.noise_beta_alpha <= 0:
            raise fail(f"noise_s must be in (0, 1] and noise_beta_alpha > 0, got {self.noise_s}, "
                       f"{self.noise_beta_alpha}")
        if self.backbone == "standin":
            if self.standin_layers < 0 or self.standin_heads <= 0 or self.vl_dim % self.standin_heads:
                raise fail(f"standin_heads {self.standin_heads} must divide vl_dim {self.vl_dim} "
                           f"and standin_layers must be >= 0")
            if self.vocab_size < 259:
                raise fail(f"the stand-in backbone's byte tokenizer needs vocab_size >= 259, got {self.vocab_size}")
            if self.max_text_len < 3:
                raise fail(f"max_text_len must be >= 3 (bos, text, eos), got {self.max_text_len}")
            if self.standin_patch_size <= 0 or self.image_size % self.standin_patch_size:
                raise fail(f"standin_patch_size {self.standin_patch_size} must divide image_size "
                           f"{self.image_size}")
        else:
            if self.backbone_select_layer <= 0:
                raise fail(f"backbone_select_layer must be >= 1, got {self.backbone_select_layer}")
            if self.backbone_hf_config is not None and not isinstance(self.backbone_hf_config, dict):
                raise fail("backbone_hf_config must be a dict (a transformers config's to_dict())")
