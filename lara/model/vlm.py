"""What GR00T's two Eagle backbones share (:class:`~lara_g1.lara.model.backbone.EagleBackbone`, N1.5;
:class:`~lara_g1.lara.model.eagle3.Eagle3Backbone`, N1.6): building from a stored config or a
checkpoint directory, loading weights by their checkpoint names, and the forward pass after the
vision tower: image tokens written over the prompt's ``<IMG_CONTEXT>`` positions, then the Qwen3
LLM cut at its select layer with its final RMSNorm kept.

A subclass supplies the vision path (:meth:`EagleVLM.vision_features`) and, as class attributes,
what differs between the two: the config checker, the checkpoint key map and name prefix, the size
checks against the policy config and the transformers requirement.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from lara_g1.core.errors import ConfigError


def check_llm_width(hf_config: dict[str, Any], config) -> None:
    """The policy's ``vl_dim`` must be the LLM's width (the features are its hidden states)."""
    width = hf_config["text_config"]["hidden_size"]
    if width != config.vl_dim:
        raise ConfigError(f"the backbone's LLM is {width} wide but vl_dim is {config.vl_dim}")


class EagleVLM(nn.Module):
    """Base of the Eagle backbones; subclasses set ``llm``, ``image_token_id`` and ``select_layer``
    in ``__init__`` and the class attributes below."""

    backbone: ClassVar[str]                    # PolicyConfig.backbone ("eagle", "eagle3")
    label: ClassVar[str]                       # in messages: "Eagle", "Eagle 3"
    config_label: ClassVar[str]                # the config.json a backbone_path holds: "Eagle 2.5", "Eagle 3"
    checkpoint_prefix: ClassVar[str]           # "backbone.eagle_model.", "backbone.model."
    # (raw config dict, select layer) -> the stored config; raises ConfigError
    stored_config: ClassVar[Callable[[dict[str, Any], int], dict[str, Any]]]
    # (checkpoint name, select layer) -> policy state_dict name, or None for an unused tensor
    key_map: ClassVar[Callable[[str, int | None], str | None]]
    # (stored config, PolicyConfig) -> None; raises ConfigError when the sizes disagree
    check_sizes: ClassVar[Callable[[dict[str, Any], Any], None]]
    require: ClassVar[Callable[[], None]]      # raises ConfigError when transformers lacks a class

    llm: nn.Module
    image_token_id: int
    select_layer: int

    @classmethod
    def from_config(cls, config, load_weights: bool = True) -> "EagleVLM":
        """Build from ``config.backbone_hf_config`` (offline; the weights come from a bundle) or, when
        it is unset, from ``config.backbone_path``: a directory with the ``config.json`` and
        ``*.safetensors`` weights (GR00T's checkpoint names, Eagle's own
        ``vision_model.*``/``mlp1.*``/``language_model.*``, or this module's ``backbone.*``; other
        tensors are ignored), whose cleaned config is then stored in ``config``."""
        cls.require()
        select = config.backbone_select_layer
        if config.backbone_hf_config is not None:
            stored = config.backbone_hf_config
            layers = (stored.get("text_config") or {}).get("num_hidden_layers")
            if layers != select or stored.get("llm_select_layer", select) != select:
                raise ConfigError(f"backbone_hf_config has {layers} LLM layers (llm_select_layer "
                                  f"{stored.get('llm_select_layer')}) but backbone_select_layer is {select}")
            hf_config = cls.stored_config(stored, select)
            cls.check_sizes(hf_config, config)
            return cls(hf_config)
        if not config.backbone_path:
            raise ConfigError(f"backbone {cls.backbone!r} needs backbone_path (a local directory with an "
                              f"{cls.config_label} config.json, weights and tokenizer) or backbone_hf_config "
                              f"(stored in a bundle)")
        path = Path(config.backbone_path)
        try:
            raw = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the {cls.label} config {path / 'config.json'} (backbone_path): "
                              f"{exc}") from exc
        hf_config = cls.stored_config(raw, select)
        cls.check_sizes(hf_config, config)
        backbone = cls(hf_config)
        if load_weights:
            backbone.load_weights(path)
        config.backbone_hf_config = hf_config
        return backbone

    def load_weights(self, path: str | Path) -> None:
        """Load every ``*.safetensors`` of directory ``path`` (names: see :meth:`from_config`); a
        missing or left-over backbone tensor is a :class:`ConfigError`."""
        from safetensors.torch import load_file

        path = Path(path)
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ConfigError(f"{path}: no *.safetensors weights for the {self.label} backbone")
        tensors: dict[str, torch.Tensor] = {}
        for file in files:
            for name, value in load_file(str(file)).items():
                if name.startswith(("vision_model.", "mlp1.", "language_model.")):
                    name = self.checkpoint_prefix + name
                if name.startswith(self.checkpoint_prefix):
                    try:
                        mapped = type(self).key_map(name, self.select_layer)
                    except ValueError as exc:
                        raise ConfigError(f"{file}: {exc}") from exc
                elif name.startswith("backbone."):
                    mapped = name
                else:
                    continue
                if mapped is None:
                    continue
                local = mapped[len("backbone."):]
                layer = re.match(r"llm\.layers\.(\d+)\.", local)
                if layer is None or int(layer.group(1)) < self.select_layer:
                    tensors[local] = value
        missing, unexpected = self.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ConfigError(f"{path}: the weights do not fit the {self.label} backbone's config: missing "
                              f"{sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image tokens ``[B, P, llm width]`` of one frame per sample."""
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        image = self.vision_features(pixel_values)                              # [B, P, D]
        embeds = self.llm.get_input_embeddings()(input_ids)                     # [B, L, D]
        is_image = input_ids == self.image_token_id
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            counts = is_image.sum(dim=1).tolist()
            if input_ids.shape[0] != pixel_values.shape[0] or any(c != image.shape[1] for c in counts):
                raise ValueError(f"each prompt must hold {image.shape[1]} <IMG_CONTEXT> tokens (id "
                                 f"{self.image_token_id}) for its one frame; got {counts} in "
                                 f"{input_ids.shape[0]} prompts for {pixel_values.shape[0]} frames")
        # row b's k-th <IMG_CONTEXT> takes image token k of frame b (GR00T: in order, batch-major);
        # a gather rather than masked assignment, so the traced graph has no data-dependent shapes
        slot = (torch.cumsum(is_image.to(torch.int64), dim=1) - 1).clamp(min=0)
        picked = torch.gather(image, 1, slot.unsqueeze(-1).expand(-1, -1, image.shape[-1]))
        embeds = torch.where(is_image.unsqueeze(-1), picked.to(embeds.dtype), embeds)
        out = self.llm(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state     # the final RMSNorm of the last kept layer's output
