"""The policy's configuration: one flat dataclass, size presets in ``configs/presets/*.yaml``.

A preset file holds only the fields it changes; everything else keeps the defaults below.
``PolicyConfig.from_preset("tiny", horizon=16)`` applies overrides on top of the preset, and
every construction (preset, dict, bundle, ``replace``) validates the whole config.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass, load_config, validate_config
from lara_g1.core.errors import ConfigError

__all__ = ["ConfigError", "PolicyConfig"]   # ConfigError: what a config that cannot build a model raises

Positive = Annotated[int, Field(strict=True, gt=0)]
NonEmpty = Annotated[str, Field(min_length=1)]
#: How one joint group of state/action maps to the model's space (docs/POLICY.md, "Normalisation"):
#: GR00T's four modes. q99 and min_max map [q01, q99] / [min, max] to [-1, 1], mean_std to
#: zero mean and unit variance, binary to {0, 1} (x > 0.5).
NormMode = Literal["q99", "min_max", "mean_std", "binary", "sin_cos"]
#: sin_cos (GR00T N1.6, state only): [sin(x), cos(x)] of the raw joint angles, twice the group's width


# Mutable: building an Eagle backbone stores its transformers config in backbone_hf_config.
@config_dataclass(frozen=False)
class PolicyConfig(ConfigModel):
    preset: NonEmpty = "custom"
    embodiment: NonEmpty = "g1"

    # action chunk and flow
    horizon: Positive = 8
    denoising_steps: Positive = 4
    num_timestep_buckets: Positive = 1000
    noise_beta_alpha: float = Field(1.5, gt=0.0)   # training t = (noise_s - Beta(alpha, 1)) / noise_s
    noise_s: float = Field(0.999, gt=0.0, le=1.0)
    # The DiT's timestep sinusoid divides its log-frequency step by (half - shift): GR00T uses
    # diffusers' downscale_freq_shift = 1 (ln 1e4 / 127 for 256 features); 0 divides by half.
    timestep_freq_shift: Annotated[int, Field(ge=0, le=1)] = 0

    # observation
    image_size: Positive = 224
    # "resize": crop + bilinear resize to image_size x image_size. "gr00t_n16": GR00T N1.6's chain (shortest
    # edge to shortest_image_edge, centre crop image_crop_scale, shortest edge again, bicubic to multiples
    # of 28); the camera's raw [height, width] is camera_size, which fixes the model's input shape
    image_pipeline: Literal["resize", "gr00t_n16"] = "resize"
    shortest_image_edge: Positive = 256
    camera_size: list[Positive] = Field(default_factory=lambda: [480, 640], min_length=2, max_length=2)
    # exactly one camera: the backbone takes one frame
    cameras: list[NonEmpty] = Field(default_factory=lambda: ["head"], min_length=1, max_length=1)
    image_mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5], min_length=3, max_length=3)
    image_std: list[Annotated[float, Field(gt=0.0)]] = Field(default_factory=lambda: [0.5, 0.5, 0.5],
                                                             min_length=3, max_length=3)
    # GR00T crops the centre (this fraction of height and width) before resizing; 1.0: no crop
    image_crop_scale: float = Field(1.0, gt=0.0, le=1.0)
    default_instruction: NonEmpty = "do the task"
    max_text_len: Positive = 16
    # per joint group of the embodiment (e.g. left_hand: binary); groups not named use q99
    normalization: dict[NonEmpty, NormMode] = Field(default_factory=dict)
    # GR00T N1.6 RELATIVE action groups: the model predicts a - (last state), normalised with per-step
    # min/max statistics, and the postprocessor adds the last state back
    relative_action_groups: list[NonEmpty] = Field(default_factory=list)
    # the chunk steps served (GR00T N1.6 predicts horizon 50; the G1 runs 8); None: all horizon steps
    action_steps: Positive | None = None

    # padding of the embodiment-specific parts
    max_state_dim: Positive = 64
    max_action_dim: Positive = 32
    num_embodiments: Positive = 64

    # vision-language backbone
    backbone: Literal["standin", "eagle", "eagle3"] = "standin"   # eagle: GR00T N1.5's, eagle3: N1.6's
    vl_dim: Positive = 128               # width of the backbone's features
    tune_backbone: StrictBool = True     # False: frozen (requires_grad off)
    # stand-in backbone (tiny / small)
    standin_layers: int = 2
    standin_heads: int = 4
    standin_patch_size: int = 32
    vocab_size: Positive = 259           # byte tokenizer: 0 pad, 1 bos, 2 eos, 3..258 bytes
    # Eagle-2-class backbone (transformers)
    backbone_path: str | None = None     # local dir or hub name, used when no hf config is stored
    backbone_select_layer: int = 12      # features = output of this LLM decoder layer (1-based)
    backbone_hf_config: dict[str, Any] | None = None  # the transformers config, stored so a bundle rebuilds offline

    # adapter over the VL tokens
    adapter_layers: int = Field(1, strict=True, ge=0)
    adapter_heads: Positive = 4

    # DiT action head
    cross_attention_dim: Positive = 128
    dit_layers: Positive = 4
    dit_heads: Positive = 4
    dit_head_dim: Positive = 32
    dit_output_dim: Positive = 128
    hidden_size: Positive = 128          # hidden width of the embodiment-specific MLPs
    max_seq_len: Positive = 1024         # learned action position embeddings
    timestep_embed_dim: Positive = 256
    # GR00T N1.5: learned tokens between the state token and the action tokens (32); LARA: none
    num_future_tokens: int = Field(0, strict=True, ge=0)
    # Pad tokens of the VL sequence are masked out of the adapter's and the DiT's attention.
    # GR00T masks nothing; at batch 1 its prompts have no pad tokens, so masking matches it there.
    mask_vl_padding: StrictBool = False
    # "all": every cross-attention block sees all VL tokens (GR00T N1.5). "alternate" (GR00T N1.6): cross
    # block i attends to the text tokens when i % (2 * attend_text_every_n_blocks) == 0, else to the
    # image tokens; needs mask_vl_padding (the image mask travels with the pad mask)
    vl_cross_attention: Literal["all", "alternate"] = "all"
    attend_text_every_n_blocks: Positive = 2
    # The DiT hidden state the alignment reads, LARA's convention: an index into
    # [DiT input, output of block 0, ..., output of block L-1] (-3: block L-3, 13 of 16)
    align_hidden_layer: int = -3

    @property
    def width(self) -> int:
        """The DiT's inner width (heads x head_dim)."""
        return self.dit_heads * self.dit_head_dim

    @property
    def uses_hf_tokenizer(self) -> bool:
        """The Eagle backbones read a transformers tokenizer (a bundle's ``tokenizer/``); the stand-in reads bytes."""
        return self.backbone in ("eagle", "eagle3")

    @property
    def align_block(self) -> int:
        """The 0-based DiT block whose output the alignment reads (13 of 16 with -3); -1 = the DiT input."""
        return self.align_hidden_layer % (self.dit_layers + 1) - 1

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PolicyConfig:
        """The bundled ``configs/presets/<name>.yaml`` with ``overrides`` applied."""
        preset = load_config(cls, name, bundled="presets/{name}.yaml", kind="preset")
        return validate_config(cls, {**preset.to_dict(), "preset": name, **overrides},
                               f"preset {name!r} with {sorted(overrides)} overridden")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @model_validator(mode="after")
    def _sizes_fit_together(self) -> PolicyConfig:
        if self.num_timestep_buckets % self.denoising_steps:
            raise ValueError(f"denoising_steps {self.denoising_steps} must divide num_timestep_buckets "
                             f"{self.num_timestep_buckets} (buckets 0, 250, 500, 750 for 4 steps)")
        if not -(self.dit_layers + 1) <= self.align_hidden_layer <= self.dit_layers:
            raise ValueError(f"align_hidden_layer {self.align_hidden_layer} is outside the DiT's "
                             f"{self.dit_layers + 1} hidden states (input + {self.dit_layers} blocks)")
        if self.vl_cross_attention == "alternate" and not self.mask_vl_padding:
            raise ValueError("vl_cross_attention 'alternate' needs mask_vl_padding (the text/image masks)")
        if self.action_steps is not None and self.action_steps > self.horizon:
            raise ValueError(f"action_steps {self.action_steps} exceeds the horizon {self.horizon}")
        if self.horizon > self.max_seq_len:
            raise ValueError(f"horizon {self.horizon} exceeds max_seq_len {self.max_seq_len}")
        if self.timestep_embed_dim % 2:
            raise ValueError(f"timestep_embed_dim must be even, got {self.timestep_embed_dim}")
        if self.width % 2:
            raise ValueError(f"the DiT width (dit_heads x dit_head_dim = {self.width}) must be even")
        if self.cross_attention_dim != self.vl_dim:
            raise ValueError(f"cross_attention_dim {self.cross_attention_dim} must equal vl_dim {self.vl_dim} "
                             f"(the DiT cross-attends to the adapted backbone features)")
        if self.vl_dim % self.adapter_heads:
            raise ValueError(f"adapter_heads {self.adapter_heads} must divide vl_dim {self.vl_dim}")
        if self.backbone == "standin":
            if self.standin_layers < 0 or self.standin_heads <= 0 or self.vl_dim % self.standin_heads:
                raise ValueError(f"standin_heads {self.standin_heads} must divide vl_dim {self.vl_dim} "
                                 f"and standin_layers must be >= 0")
            if self.vocab_size < 259:
                raise ValueError(f"the stand-in backbone's byte tokenizer needs vocab_size >= 259, "
                                 f"got {self.vocab_size}")
            if self.max_text_len < 3:
                raise ValueError(f"max_text_len must be >= 3 (bos, text, eos), got {self.max_text_len}")
            if self.standin_patch_size <= 0 or self.image_size % self.standin_patch_size:
                raise ValueError(f"standin_patch_size {self.standin_patch_size} must divide image_size "
                                 f"{self.image_size}")
        elif self.backbone_select_layer <= 0:
            raise ValueError(f"backbone_select_layer must be >= 1, got {self.backbone_select_layer}")
        if self.image_pipeline == "gr00t_n16" and self.backbone != "eagle3":
            raise ValueError(f"image_pipeline 'gr00t_n16' makes non-square images (sides multiples of 28) that only "
                             f"backbone 'eagle3' takes; backbone is {self.backbone!r}")
        if self.backbone == "eagle3" and self.image_pipeline == "resize" and self.image_size % 28:
            raise ValueError(f"backbone 'eagle3' takes images whose sides are multiples of 28 (patch 14, 2x2 "
                             f"unshuffle); image_size is {self.image_size}")
        return self
