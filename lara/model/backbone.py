"""Vision-language backbones: frame + instruction tokens -> VL tokens ``[B, N, vl_dim]``.

Three implementations behind one call signature ``(pixel_values, input_ids, attention_mask)``:

- :class:`StandInBackbone` (``tiny``/``small``): a patch ViT over the frame and an embedding
  of the byte-level instruction tokens (:class:`lara_g1.lara.processing.ByteTokenizer`), mixed by a
  few self-attention layers. Small, trainable, fast on CPU.
- :class:`EagleBackbone` (``paper``): GR00T N1.5's Eagle 2.5 VL backbone rebuilt from stock
  transformers classes (no remote code, no flash-attn): ``SiglipVisionModel`` -> one Linear ->
  image tokens written over the prompt's ``<IMG_CONTEXT>`` positions -> ``Qwen3Model`` cut to
  ``backbone_select_layer`` layers with its final RMSNorm kept, so the features are exactly
  GR00T's (N1.5: norm of layer 12's output, 2048-d). Config and checkpoint names:
  :mod:`lara_g1.lara.model.eagle`; the prompt: :mod:`lara_g1.lara.prompt`.
- ``Eagle3Backbone`` (``eagle3``): GR00T N1.6's Eagle 3 VL backbone (SigLIP2, 2x2 pixel unshuffle,
  MLP projector, Qwen3), in :mod:`lara_g1.lara.model.eagle3`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lara_g1.lara.model.config import ConfigError, PolicyConfig
from lara_g1.lara.model.eagle import GR00T_PREFIX, eagle_config, eagle_image_tokens, eagle_key_map, require_transformers
from lara_g1.lara.model.layers import EncoderLayer, sinusoidal_embedding
from lara_g1.lara.model.vlm import EagleVLM, check_llm_width


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


def _check_sizes(hf_config: dict[str, Any], config: PolicyConfig) -> None:
    check_llm_width(hf_config, config)
    size = hf_config["vision_config"]["image_size"]
    if size != config.image_size:
        raise ConfigError(f"the vision tower takes {size} px images but image_size is {config.image_size}")


def _sub_config_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "model_type"}


class EagleBackbone(EagleVLM):
    """GR00T N1.5's Eagle backbone from a stored config dict (:func:`lara_g1.lara.model.eagle.eagle_config`).

    Submodules (their ``state_dict`` names under the policy's ``backbone.``): ``vision`` (SigLIP,
    without its unused pooling head), ``projector`` (Eagle's ``mlp1``), ``llm`` (Qwen3, cut to
    ``llm_select_layer`` layers, final norm kept). Build with :meth:`from_config`; the forward pass
    and the weight loading are :class:`~lara_g1.lara.model.vlm.EagleVLM`'s."""

    backbone, label, config_label, checkpoint_prefix = "eagle", "Eagle", "Eagle 2.5", GR00T_PREFIX
    stored_config = staticmethod(eagle_config)
    key_map = staticmethod(eagle_key_map)
    check_sizes = staticmethod(_check_sizes)
    require = staticmethod(require_transformers)

    def __init__(self, hf_config: dict[str, Any]):
        super().__init__()
        require_transformers()
        from transformers import Qwen3Config, Qwen3Model, SiglipVisionConfig, SiglipVisionModel

        if not isinstance(hf_config, dict) or "llm_select_layer" not in hf_config:
            raise ConfigError("EagleBackbone takes a stored Eagle config (eagle_config(...): it has llm_select_layer)")
        hf_config = eagle_config(hf_config, hf_config["llm_select_layer"])
        vision_cfg = SiglipVisionConfig(**_sub_config_kwargs(hf_config["vision_config"]), vision_use_head=False,
                                        attn_implementation="sdpa")
        vision = SiglipVisionModel(vision_cfg)
        # older transformers wrap the tower in an inner `vision_model`: keep the names flat either way
        self.vision = getattr(vision, "vision_model", vision)
        self.projector = nn.Linear(vision_cfg.hidden_size, hf_config["text_config"]["hidden_size"])
        self.llm = Qwen3Model(Qwen3Config(**_sub_config_kwargs(hf_config["text_config"]), attn_implementation="sdpa"))
        self.image_token_id = int(hf_config["image_token_index"])
        self.image_tokens = eagle_image_tokens(hf_config)
        self.select_layer = int(hf_config["llm_select_layer"])

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, image_tokens, llm width]``: SigLIP's ``last_hidden_state``, then the projector."""
        return self.projector(self.vision(pixel_values).last_hidden_state)


def build_backbone(config: PolicyConfig, load_weights: bool = True) -> nn.Module:
    if config.backbone == "standin":
        return StandInBackbone(config)
    if config.backbone == "eagle3":     # GR00T N1.6's Eagle 3 VL: lara_g1.lara.model.eagle3
        from lara_g1.lara.model.eagle3 import Eagle3Backbone

        return Eagle3Backbone.from_config(config, load_weights=load_weights)
    return EagleBackbone.from_config(config, load_weights=load_weights)
