"""Vision-language backbones: frame + instruction tokens -> VL tokens ``[B, N, vl_dim]``.

Two implementations behind one call signature ``(pixel_values, input_ids, attention_mask)``:

- :class:`StandInBackbone` (``tiny``/``small``): a patch ViT over the frame and an embedding
  of the byte-level instruction tokens (:class:`lara_g1.lara.processing.ByteTokenizer`), mixed by a
  few self-attention layers. Small, trainable, fast on CPU.
- :class:`EagleBackbone` (``paper``): an Eagle-2-class VLM (SigLIP vision tower + projector
  + Qwen3 LLM, e.g. ``LlavaModel`` in transformers) loaded with ``transformers.AutoModel``.
  The LLM is cut after ``backbone_select_layer`` decoder layers and its final norm removed,
  so the features are exactly the output of that layer (GR00T N1.5: layer 12, 2048-d).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lara_g1.lara.model.config import ConfigError, PolicyConfig
from lara_g1.lara.model.layers import EncoderLayer, sinusoidal_embedding


class StandInBackbone(nn.Module):
    def __init__(self, config: PolicyConfig):
        super().__init__()
        dim, patch = config.vl_dim, config.standin_patch_size
        self.num_patches = (config.image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.token_embed = nn.Embedding(config.vocab_size, dim, padding_idx=0)
        self.type_embed = nn.Parameter(torch.zeros(2, dim))  # 0: image patch, 1: text token
        nn.init.normal_(self.type_embed, std=0.02)
        self.register_buffer("image_pos", sinusoidal_embedding(torch.arange(self.num_patches), dim), persistent=False)
        self.register_buffer("text_pos", sinusoidal_embedding(torch.arange(config.max_text_len), dim), persistent=False)
        self.layers = nn.ModuleList(EncoderLayer(dim, config.standin_heads) for _ in range(config.standin_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        img = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)          # [B, P, D]
        img = img + self.image_pos + self.type_embed[0]
        txt = self.token_embed(input_ids) + self.text_pos[: input_ids.shape[1]] + self.type_embed[1]
        x = torch.cat([img, txt], dim=1)
        key_mask = torch.cat([torch.ones_like(attention_mask[:, :1]).expand(-1, img.shape[1]), attention_mask], dim=1)
        for layer in self.layers:
            x = layer(x, key_mask=key_mask)
        return self.norm(x)


def _hf_config_from_dict(raw: dict[str, Any]):
    from transformers import AutoConfig

    raw = copy.deepcopy(raw)
    model_type = raw.pop("model_type", None)
    if not model_type:
        raise ConfigError("backbone_hf_config has no 'model_type'; it must be a transformers config's to_dict()")
    try:
        return AutoConfig.for_model(model_type, **raw)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"transformers cannot build a config of model_type {model_type!r}: {exc}") from exc


def _text_config(hf_config):
    text = getattr(hf_config, "text_config", None)
    if text is None or not hasattr(text, "num_hidden_layers"):
        raise ConfigError(f"{type(hf_config).__name__} has no text_config with num_hidden_layers; the Eagle "
                          f"backbone needs a vision-language config (vision tower + projector + LLM)")
    return text


def _check_sizes(hf_config, config: PolicyConfig) -> None:
    width = _text_config(hf_config).hidden_size
    if width != config.vl_dim:
        raise ConfigError(f"the backbone's LLM is {width} wide but vl_dim is {config.vl_dim}")
    vision = getattr(hf_config, "vision_config", None)
    if vision is not None and getattr(vision, "image_size", config.image_size) != config.image_size:
        raise ConfigError(f"the vision tower takes {vision.image_size} px images but image_size is "
                          f"{config.image_size}")


def _load_truncated(path: str, hf_config):
    """``AutoModel.from_pretrained`` of a config whose LLM was cut short: the dropped layers'
    weights are expected leftovers (not reported); any *missing* weight is an error."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModel.from_pretrained(path, config=hf_config, dtype=torch.float32, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    if info.get("missing_keys"):
        raise ConfigError(f"{path}: the checkpoint lacks weights {sorted(info['missing_keys'])[:8]} of "
                          f"{type(model).__name__}; is it an Eagle-2-class VLM?")
    return model


class EagleBackbone(nn.Module):
    """A transformers VLM cut at an LLM layer. Build with :meth:`from_config`."""

    def __init__(self, model: nn.Module, select_layer: int):
        super().__init__()
        self.model = model
        self.select_layer = select_layer
        lm = getattr(model, "language_model", None)
        if lm is None or not hasattr(lm, "layers") or not hasattr(lm, "norm"):
            raise ConfigError(f"{type(model).__name__} has no language_model with .layers and .norm; "
                              f"use an Eagle-2-class VLM (e.g. LlavaModel: SigLIP + projector + Qwen3)")
        if len(lm.layers) != select_layer:
            raise ConfigError(f"the LLM has {len(lm.layers)} decoder layers after truncation, "
                              f"expected backbone_select_layer={select_layer}")
        lm.norm = nn.Identity()  # features = output of decoder layer select_layer, before any final norm

    @classmethod
    def from_config(cls, config: PolicyConfig, load_weights: bool = True) -> "EagleBackbone":
        """Build from ``config.backbone_hf_config`` (offline, weights come from a bundle) or, when it
        is unset, load ``config.backbone_path`` with its weights and store its config in ``config``."""
        from transformers import AutoConfig, AutoModel

        select = config.backbone_select_layer
        if config.backbone_hf_config is not None:
            hf_config = _hf_config_from_dict(config.backbone_hf_config)
            if _text_config(hf_config).num_hidden_layers != select:
                raise ConfigError(f"backbone_hf_config has {_text_config(hf_config).num_hidden_layers} LLM layers "
                                  f"but backbone_select_layer is {select}")
            _check_sizes(hf_config, config)
            model = AutoModel.from_config(hf_config, dtype=torch.float32)
        elif config.backbone_path:
            try:
                hf_config = AutoConfig.from_pretrained(config.backbone_path)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load a transformers config from backbone_path "
                                  f"{config.backbone_path!r}: {exc}") from exc
            text = _text_config(hf_config)
            if select > text.num_hidden_layers:
                raise ConfigError(f"backbone_select_layer {select} exceeds the LLM's {text.num_hidden_layers} layers")
            text.num_hidden_layers = select  # drop the layers after the feature layer
            if isinstance(getattr(text, "layer_types", None), list):
                text.layer_types = text.layer_types[:select]
            _check_sizes(hf_config, config)
            if load_weights:
                model = _load_truncated(config.backbone_path, hf_config)
            else:
                model = AutoModel.from_config(hf_config, dtype=torch.float32)
            config.backbone_hf_config = hf_config.to_dict()
        else:
            raise ConfigError("backbone 'eagle' needs backbone_path (a local directory or hub name of an "
                              "Eagle-2-class checkpoint) or backbone_hf_config (stored in a bundle)")
        return cls(model, select)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
        return out.last_hidden_state


def build_backbone(config: PolicyConfig, load_weights: bool = True) -> nn.Module:
    if config.backbone == "standin":
        return StandInBackbone(config)
    return EagleBackbone.from_config(config, load_weights=load_weights)
