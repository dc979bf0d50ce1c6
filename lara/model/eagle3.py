"""GR00T N1.6's Eagle 3 VL backbone from stock transformers classes (no remote code, no flash-attn).

What GR00T N1.6's ``EagleBackbone`` computes and :class:`Eagle3Backbone` rebuilds (one frame per
sample, shape fixed by :func:`lara_g1.lara.processing.n16_pixel_shape`):

1. ``transformers.Siglip2VisionModel`` on each image alone (every image attends only to its own
   patches; GR00T packs the batch's images into one flash-attn varlen sequence whose boundaries
   do the same): 14x14 patches flattened in (py, px, c) order (index ``(py * 14 + px) * 3 + c``),
   ``patch_embedding`` = Linear(588 -> C); the learned ``num_patches`` position embedding, a
   square grid, resized bilinearly (``align_corners=False``, antialiased, fp32) to the image's
   patch grid and added; the encoder layers; ``post_layernorm``;
2. ``F.pixel_unshuffle(2)`` of the ``[C, H/14, W/14]`` patch grid: one token per 2x2 block, channel
   ``4c + 2r + s`` (c: SigLIP channel, r/s: row/column in the block) -- Eagle's ``pixel_shuffle``
   order, not LFM2's (r, s, c) --, tokens row-major;
3. the projector (Eagle's ``mlp1``): LayerNorm(4C) -> Linear(4C -> D) -> GELU (erf) -> Linear(D -> D);
4. those tokens written over the prompt's ``<IMG_CONTEXT>`` positions, in order
   (:class:`lara_g1.lara.prompt.Gr00tN16Prompt`: ``H * W / 784`` per frame);
5. ``transformers.Qwen3Model`` cut to its first ``llm_select_layer`` decoder layers, its FINAL
   RMSNorm kept (features = that norm's output; GR00T N1.6 keeps 16 of Qwen3-1.7B's 28), causal +
   padding mask, positions 0..L-1 in every row (as GR00T, which passes none).

The stored config (``PolicyConfig.backbone_hf_config``) is Eagle 3's ``config.json`` (GR00T's
``Eagle-Block2A-2B-v2/config.json``, not in the checkpoint) cleaned of private and remote-code keys,
``text_config.num_hidden_layers`` cut to ``llm_select_layer`` (GR00T's top-level ``select_layer``).

Checkpoint names (GR00T N1.6 ``model*.safetensors`` -> this project's policy ``state_dict``):

==========================================================  ======================================
``backbone.model.vision_model.vision_model.X``               ``backbone.vision.X`` (``head.*``: dropped)
``backbone.model.mlp1.{0,1,3}.{weight,bias}``                ``backbone.projector.{0,1,3}.*``
``backbone.model.language_model.model.X``                    ``backbone.llm.X`` (layers >= select: dropped)
``backbone.model.language_model.lm_head.weight``             dropped (unused by the features)
==========================================================  ======================================
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lara_g1.core.errors import ConfigError
from lara_g1.lara.model.eagle import MIN_TRANSFORMERS, cut_llm, map_vision_and_llm, require_transformers
from lara_g1.lara.model.vlm import EagleVLM, check_llm_width

__all__ = ["GR00T_N16_PREFIX", "PIXEL_MULTIPLE", "Eagle3Backbone", "eagle3_config", "eagle3_config_from_gr00t",
           "eagle3_image_tokens", "eagle3_key_map", "require_siglip2"]

#: prefix of the Eagle tensors in a GR00T N1.6 checkpoint
GR00T_N16_PREFIX = "backbone.model."
#: image sides must be multiples of this: patch 14, then 2x2 pixel unshuffle
PIXEL_MULTIPLE = 28

_SIGLIP2_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
                 "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout", "num_patches")
_PROJECTOR = ("0", "1", "3")      # mlp1 = [LayerNorm, Linear, GELU, Linear]


def require_siglip2() -> None:
    """Raise :class:`ConfigError` unless the installed transformers has ``Siglip2VisionModel`` and
    ``Qwen3Model`` (transformers >= 4.51)."""
    require_transformers()
    import transformers

    if not hasattr(transformers, "Siglip2VisionModel"):
        need = ".".join(map(str, MIN_TRANSFORMERS))
        raise ConfigError(f"GR00T N1.6's Eagle 3 backbone needs transformers.Siglip2VisionModel, which transformers "
                          f"{transformers.__version__} lacks: pip install -U 'transformers>={need}'")


def eagle3_key_map(name: str, select_layer: int | None = None) -> str | None:
    """The policy ``state_dict`` name of GR00T N1.6 checkpoint tensor ``name``, or None for a tensor
    the backbone does not use (SigLIP2's pooling ``head.*``, ``language_model.lm_head.weight`` and,
    with ``select_layer``, the LLM layers at or after it). Names outside ``backbone.model.`` (the
    action head's) and unknown Eagle names raise ``ValueError``: an importer must not drop them."""
    if not name.startswith(GR00T_N16_PREFIX):
        raise ValueError(f"{name!r} is not an Eagle tensor of a GR00T N1.6 checkpoint (expected {GR00T_N16_PREFIX}*)")
    rest = name[len(GR00T_N16_PREFIX):]
    parts = rest.split(".")
    if len(parts) == 3 and parts[0] == "mlp1" and parts[1] in _PROJECTOR and parts[2] in ("weight", "bias"):
        return f"backbone.projector.{parts[1]}.{parts[2]}"
    known, target = map_vision_and_llm(rest, select_layer)
    if known:
        return target
    raise ValueError(f"{name!r}: unknown Eagle 3 tensor (this backbone has SigLIP2, mlp1 = LayerNorm + 2 Linear "
                     f"and a Qwen3 LLM)")


def _int(section: dict[str, Any], key: str, where: str) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} is missing or not an integer")
    return value


def eagle3_config(raw: dict[str, Any], select_layer: int) -> dict[str, Any]:
    """The stored backbone config from an Eagle 3 ``config.json`` dict (or an already stored one):
    checked, cleaned, the LLM cut to ``select_layer`` layers. Raises :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the Eagle 3 config must be a mapping, got {type(raw).__name__}")
    vision, text = raw.get("vision_config"), raw.get("text_config")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise ConfigError("the Eagle 3 config needs vision_config and text_config mappings (Eagle 3's config.json)")
    if raw.get("model_type", "eagle_3_vl") != "eagle_3_vl":
        raise ConfigError(f"model_type {raw.get('model_type')!r}: not an Eagle 3 VL config ('eagle_3_vl')")
    if vision.get("model_type") != "siglip2_vision_model":
        raise ConfigError(f"vision_config.model_type {vision.get('model_type')!r}: only SigLIP2 "
                          f"('siglip2_vision_model') is supported")
    if vision.get("use_rope", False) or vision.get("use_windows_attn", False):
        raise ConfigError("vision_config has use_rope or use_windows_attn: only GR00T N1.6's SigLIP2 (learned "
                          "position embedding, full attention in each image) is supported")
    if text.get("model_type") != "qwen3":
        raise ConfigError(f"text_config.model_type {text.get('model_type')!r}: only Qwen3 ('qwen3') is supported")
    if isinstance(raw.get("image_token_index"), bool) or not isinstance(raw.get("image_token_index"), int):
        raise ConfigError("the Eagle 3 config has no integer image_token_index (the id of <IMG_CONTEXT>)")
    if raw.get("select_layer", -1) != -1:
        raise ConfigError(f"Eagle's select_layer (the vision feature layer) is {raw['select_layer']}; only -1 "
                          f"(SigLIP2's last_hidden_state, as GR00T N1.6) is supported")
    if not raw.get("use_pixel_shuffle", False) or raw.get("downsample_ratio") != 0.5:
        raise ConfigError(f"use_pixel_shuffle {raw.get('use_pixel_shuffle')!r}, downsample_ratio "
                          f"{raw.get('downsample_ratio')!r}: only GR00T N1.6's 2x2 pixel unshuffle (true, 0.5) "
                          f"is supported")
    if raw.get("mlp_connector_layers", 2) != 2:
        raise ConfigError(f"mlp_connector_layers is {raw['mlp_connector_layers']}; only 2 (mlp1 = LayerNorm, Linear, "
                          f"GELU, Linear, as GR00T N1.6) is supported")
    for key in ("use_backbone_lora", "use_llm_lora", "use_thumbnail", "dynamic_image_size", "pad2square"):
        if raw.get(key):
            raise ConfigError(f"{key} is {raw[key]!r}: not supported (GR00T N1.6 has it off)")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size",
                "num_patches"):
        _int(vision, key, "vision_config")
    grid = int(round(vision["num_patches"] ** 0.5))
    if grid * grid != vision["num_patches"]:
        raise ConfigError(f"vision_config.num_patches {vision['num_patches']} is not a square grid")
    if vision["patch_size"] * 2 != PIXEL_MULTIPLE:
        raise ConfigError(f"vision_config.patch_size is {vision['patch_size']}; only 14 (28 px per image token) is "
                          f"supported")
    for key in ("hidden_size", "num_hidden_layers", "vocab_size"):
        _int(text, key, "text_config")
    return cut_llm(raw, select_layer, "eagle_3_vl")


def eagle3_config_from_gr00t(gr00t_n16_config: dict[str, Any], eagle_assets_config: dict[str, Any]) -> dict[str, Any]:
    """``PolicyConfig.backbone_hf_config`` of a GR00T N1.6 checkpoint: ``gr00t_n16_config`` is its
    ``config.json`` (top-level ``select_layer``: the LLM layers kept, 16 in the release;
    ``backbone_embedding_dim``: the LLM's width), ``eagle_assets_config`` GR00T's
    ``Eagle-Block2A-2B-v2/config.json`` (not in the checkpoint). The result's ``llm_select_layer`` is
    what ``PolicyConfig.backbone_select_layer`` must be."""
    if not isinstance(gr00t_n16_config, dict) or "select_layer" not in gr00t_n16_config:
        raise ConfigError("the GR00T config has no select_layer (is it a GR00T N1.6 config.json?)")
    model_type = gr00t_n16_config.get("model_type", "Gr00tN1d6")
    if model_type != "Gr00tN1d6":
        raise ConfigError(f"model_type {model_type!r}: not a GR00T N1.6 config ('Gr00tN1d6')")
    if gr00t_n16_config.get("reproject_vision"):
        raise ConfigError("reproject_vision is true: not supported (GR00T N1.6 has false)")
    out = eagle3_config(eagle_assets_config, gr00t_n16_config["select_layer"])
    width = gr00t_n16_config.get("backbone_embedding_dim")
    if width is not None and width != out["text_config"]["hidden_size"]:
        raise ConfigError(f"backbone_embedding_dim {width} differs from the Eagle LLM's width "
                          f"{out['text_config']['hidden_size']}: the assets config does not belong to the checkpoint")
    return out


def eagle3_image_tokens(hf_config: dict[str, Any], pixel_hw: tuple[int, int]) -> int:
    """``<IMG_CONTEXT>`` tokens of one ``pixel_hw = (H, W)`` frame: ``H * W / 784`` (14 px patches,
    then 2x2 pixel unshuffle); both sides must be multiples of 28."""
    vision = (hf_config or {}).get("vision_config") or {}
    if vision.get("patch_size") != PIXEL_MULTIPLE // 2 or (hf_config or {}).get("downsample_ratio") != 0.5:
        raise ConfigError("backbone_hf_config needs an Eagle 3 config (vision_config.patch_size 14, "
                          "downsample_ratio 0.5; build the policy first: it stores the config)")
    h, w = (int(v) for v in pixel_hw)
    if h < PIXEL_MULTIPLE or w < PIXEL_MULTIPLE or h % PIXEL_MULTIPLE or w % PIXEL_MULTIPLE:
        raise ConfigError(f"the Eagle 3 backbone takes images whose sides are multiples of {PIXEL_MULTIPLE}; "
                          f"got {h} x {w}")
    return (h // PIXEL_MULTIPLE) * (w // PIXEL_MULTIPLE)


class Eagle3Backbone(EagleVLM):
    """GR00T N1.6's Eagle 3 backbone from a stored config dict (:func:`eagle3_config`).

    Submodules (``state_dict`` names under the policy's ``backbone.``): ``vision`` (SigLIP2 without
    its pooling head), ``projector`` (Eagle's ``mlp1``: ``0`` LayerNorm, ``1`` Linear, ``2`` GELU,
    ``3`` Linear), ``llm`` (Qwen3 cut to ``llm_select_layer`` layers, final norm kept). Forward:
    ``(pixel_values f32 [B, 3, H, W], input_ids i64 [B, T], attention_mask i64 [B, T]) -> [B, T, D]``,
    one frame per prompt; H and W multiples of 28. Build with :meth:`from_config`; the forward pass
    and the weight loading are :class:`~lara_g1.lara.model.vlm.EagleVLM`'s."""

    backbone, label, config_label, checkpoint_prefix = "eagle3", "Eagle 3", "Eagle 3", GR00T_N16_PREFIX
    stored_config = staticmethod(eagle3_config)
    key_map = staticmethod(eagle3_key_map)
    check_sizes = staticmethod(check_llm_width)
    require = staticmethod(require_siglip2)

    def __init__(self, hf_config: dict[str, Any]):
        super().__init__()
        require_siglip2()
        from transformers import Qwen3Config, Qwen3Model, Siglip2VisionConfig, Siglip2VisionModel

        if not isinstance(hf_config, dict) or "llm_select_layer" not in hf_config:
            raise ConfigError("Eagle3Backbone takes a stored Eagle 3 config (eagle3_config(...): it has "
                              "llm_select_layer)")
        hf_config = eagle3_config(hf_config, hf_config["llm_select_layer"])
        vision_raw = hf_config["vision_config"]
        vision_cfg = Siglip2VisionConfig(**{k: vision_raw[k] for k in _SIGLIP2_KEYS if k in vision_raw},
                                         vision_use_head=False, attn_implementation="sdpa")
        vision = Siglip2VisionModel(vision_cfg)
        # transformers 4.x wraps the tower in an inner `vision_model`: keep the names flat either way
        self.vision = getattr(vision, "vision_model", vision)
        width, dim = vision_cfg.hidden_size * 4, hf_config["text_config"]["hidden_size"]
        self.projector = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))
        text = {k: v for k, v in hf_config["text_config"].items() if k != "model_type"}
        self.llm = Qwen3Model(Qwen3Config(**text, attn_implementation="sdpa"))
        self.patch_size = int(vision_cfg.patch_size)
        self.image_token_id = int(hf_config["image_token_index"])
        self.select_layer = int(hf_config["llm_select_layer"])

    def siglip(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """SigLIP2's ``last_hidden_state`` ``[B, (H/14) * (W/14), C]``, patches row-major, each image
        attending only to its own patches (the batch axis keeps them apart)."""
        _, channels, height, width = pixel_values.shape
        p = self.patch_size
        if height % (2 * p) or width % (2 * p):
            raise ValueError(f"image sides must be multiples of {2 * p} (patch {p}, 2x2 unshuffle); got "
                             f"{height} x {width}")
        gh, gw = int(height) // p, int(width) // p
        # (py, px, c) order inside a patch: the layout of SigLIP2's Linear patch embedding
        patches = (pixel_values.reshape(-1, channels, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
                   .reshape(-1, gh * gw, p * p * channels))
        # one spatial shape for every image (they share one size): the resized position embedding
        # ([1, gh * gw, C]) broadcasts over the batch
        shapes = torch.tensor([[gh, gw]], dtype=torch.long, device=pixel_values.device)
        x = self.vision.embeddings(patches, shapes)
        x = self.vision.encoder(inputs_embeds=x, attention_mask=None).last_hidden_state
        return self.vision.post_layernorm(x)

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image tokens ``[B, H * W / 784, D]``: SigLIP2, 2x2 pixel unshuffle, projector."""
        height, width = pixel_values.shape[-2:]
        gh, gw = int(height) // self.patch_size, int(width) // self.patch_size
        x = self.siglip(pixel_values)                                           # [B, gh * gw, C]
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], gh, gw)           # [B, C, gh, gw]
        # channel 4c + 2r + s of the 2x2 block at (2i + r, 2j + s): Eagle's pixel_shuffle order
        x = F.pixel_unshuffle(x, 2).flatten(2).transpose(1, 2)                  # [B, gh/2 * gw/2, 4C]
        return self.projector(x)
