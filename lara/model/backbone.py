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

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lara_g1.lara.model.config import ConfigError, PolicyConfig
from lara_g1.lara.model.eagle import GR00T_PREFIX, eagle_config, eagle_image_tokens, eagle_key_map, require_transformers
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


def _check_sizes(hf_config: dict[str, Any], config: PolicyConfig) -> None:
    width = hf_config["text_config"]["hidden_size"]
    if width != config.vl_dim:
        raise ConfigError(f"the backbone's LLM is {width} wide but vl_dim is {config.vl_dim}")
    size = hf_config["vision_config"]["image_size"]
    if size != config.image_size:
        raise ConfigError(f"the vision tower takes {size} px images but image_size is {config.image_size}")


def _sub_config_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "model_type"}


class EagleBackbone(nn.Module):
    """GR00T N1.5's Eagle backbone from a stored config dict (:func:`lara_g1.lara.model.eagle.eagle_config`).

    Submodules (their ``state_dict`` names under the policy's ``backbone.``): ``vision`` (SigLIP,
    without its unused pooling head), ``projector`` (Eagle's ``mlp1``), ``llm`` (Qwen3, cut to
    ``llm_select_layer`` layers, final norm kept). Build with :meth:`from_config`."""

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
        self.image_token_index = int(hf_config["image_token_index"])
        self.image_tokens = eagle_image_tokens(hf_config)
        self.select_layer = int(hf_config["llm_select_layer"])

    @classmethod
    def from_config(cls, config: PolicyConfig, load_weights: bool = True) -> "EagleBackbone":
        """Build from ``config.backbone_hf_config`` (offline; the weights come from a bundle) or, when
        it is unset, from ``config.backbone_path``: a directory with an Eagle 2.5 ``config.json`` and
        ``*.safetensors`` weights (GR00T names ``backbone.eagle_model.*``, Eagle's own
        ``vision_model.*``/``mlp1.*``/``language_model.*``, or this module's ``backbone.*``; other
        tensors are ignored), whose cleaned config is then stored in ``config``."""
        require_transformers()
        select = config.backbone_select_layer
        if config.backbone_hf_config is not None:
            stored = config.backbone_hf_config
            layers = (stored.get("text_config") or {}).get("num_hidden_layers")
            if layers != select or stored.get("llm_select_layer", select) != select:
                raise ConfigError(f"backbone_hf_config has {layers} LLM layers (llm_select_layer "
                                  f"{stored.get('llm_select_layer')}) but backbone_select_layer is {select}")
            hf_config = eagle_config(stored, select)
            _check_sizes(hf_config, config)
            return cls(hf_config)
        if not config.backbone_path:
            raise ConfigError("backbone 'eagle' needs backbone_path (a local directory with an Eagle 2.5 "
                              "config.json, weights and tokenizer) or backbone_hf_config (stored in a bundle)")
        path = Path(config.backbone_path)
        try:
            raw = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the Eagle config {path / 'config.json'} (backbone_path): {exc}") from exc
        hf_config = eagle_config(raw, select)
        _check_sizes(hf_config, config)
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
            raise ConfigError(f"{path}: no *.safetensors weights for the Eagle backbone")
        tensors: dict[str, torch.Tensor] = {}
        for file in files:
            for name, value in load_file(str(file)).items():
                if name.startswith(("vision_model.", "mlp1.", "language_model.")):
                    name = GR00T_PREFIX + name
                if name.startswith(GR00T_PREFIX):
                    try:
                        mapped = eagle_key_map(name, self.select_layer)
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
            raise ConfigError(f"{path}: the weights do not fit the Eagle backbone's config: missing "
                              f"{sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, image_tokens, llm width]``: SigLIP's ``last_hidden_state``, then the projector."""
        return self.projector(self.vision(pixel_values).last_hidden_state)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        image = self.vision_features(pixel_values)                              # [B, P, D]
        embeds = self.llm.get_input_embeddings()(input_ids)                     # [B, L, D]
        is_image = input_ids == self.image_token_index
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            counts = is_image.sum(dim=1).tolist()
            if input_ids.shape[0] != pixel_values.shape[0] or any(c != image.shape[1] for c in counts):
                raise ValueError(f"each prompt must hold {image.shape[1]} <IMG_CONTEXT> tokens (id "
                                 f"{self.image_token_index}) for its one frame; got {counts} in "
                                 f"{input_ids.shape[0]} prompts for {pixel_values.shape[0]} frames")
        # row b's k-th <IMG_CONTEXT> takes image token k of frame b (GR00T: in order, batch-major);
        # a gather rather than masked assignment, so the traced graph has no data-dependent shapes
        slot = (torch.cumsum(is_image.to(torch.int64), dim=1) - 1).clamp(min=0)
        picked = torch.gather(image, 1, slot.unsqueeze(-1).expand(-1, -1, image.shape[-1]))
        embeds = torch.where(is_image.unsqueeze(-1), picked.to(embeds.dtype), embeds)
        out = self.llm(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state     # the final RMSNorm of the last kept layer's output


def build_backbone(config: PolicyConfig, load_weights: bool = True) -> nn.Module:
    if config.backbone == "standin":
        return StandInBackbone(config)
    if config.backbone == "eagle3":     # GR00T N1.6's Eagle 3 VL: lara_g1.lara.model.eagle3
        from lara_g1.lara.model.eagle3 import Eagle3Backbone

        return Eagle3Backbone.from_config(config, load_weights=load_weights)
    return EagleBackbone.from_config(config, load_weights=load_weights)
