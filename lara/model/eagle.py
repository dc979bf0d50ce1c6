"""GR00T N1.5's Eagle 2.5 VL backbone: its stored config and its checkpoint names (no torch here).

What GR00T N1.5's backbone computes (and :class:`lara_g1.lara.model.backbone.EagleBackbone`
rebuilds from stock transformers classes, no remote code):

1. SigLIP vision tower on one 224 px frame -> ``last_hidden_state`` (after ``post_layernorm``):
   256 tokens of 1152 (patch 14; Eagle's ``select_layer`` -1, no pixel shuffle);
2. ``mlp1``: one Linear(1152 -> 2048);
3. the image tokens are written over the ``<IMG_CONTEXT>`` positions of the LLM's input
   embeddings, in order (the prompt: :mod:`lara_g1.lara.prompt`);
4. Qwen3 cut to its first ``select_layer`` (12) decoder layers, its FINAL RMSNorm kept: the
   features are ``norm(output of layer select_layer)`` = ``hidden_states[select_layer]``.

The stored config (``PolicyConfig.backbone_hf_config``) is Eagle 2.5's ``config.json`` (GR00T's
``gr00t/model/backbone/eagle2_hg_model/config.json``) cleaned of private and remote-code keys, with
``text_config.num_hidden_layers`` cut to the LLM layer the features come from and that layer
also stored as ``llm_select_layer``. Eagle's own ``select_layer`` key is the VISION feature layer
(-1: SigLIP's last output), not GR00T's ``backbone_cfg.select_layer``; only -1 is supported.

Checkpoint names (GR00T ``model*.safetensors`` -> this project's policy ``state_dict``):

========================================================  =====================================
``backbone.eagle_model.vision_model.vision_model.X``       ``backbone.vision.X`` (``head.*``: dropped)
``backbone.eagle_model.mlp1.0.{weight,bias}``              ``backbone.projector.{weight,bias}``
``backbone.eagle_model.language_model.model.X``            ``backbone.llm.X``
``backbone.eagle_model.language_model.lm_head.weight``     dropped (tied to ``embed_tokens``)
========================================================  =====================================
"""
from __future__ import annotations

import copy
import re
from typing import Any

from lara_g1.core.errors import ConfigError

__all__ = ["GR00T_PREFIX", "MIN_TRANSFORMERS", "eagle_config", "eagle_config_from_gr00t",
           "eagle_image_tokens", "eagle_key_map", "require_transformers"]

#: the oldest transformers with everything the backbone needs (Qwen3Model arrived in 4.51.0)
MIN_TRANSFORMERS = (4, 51, 0)
#: prefix of the Eagle tensors in a GR00T N1.5 checkpoint
GR00T_PREFIX = "backbone.eagle_model."

# keys of Eagle's config (and its sub-configs) that say how to load the remote code or how the
# original was run, not what the network is; dropped from the stored config
_NOT_STORED = ("auto_map", "architectures", "torch_dtype", "dtype", "transformers_version")
_LAYER = re.compile(r"layers\.(\d+)\.")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def require_transformers(version: str | None = None) -> None:
    """Raise :class:`ConfigError` unless transformers (``version``, default: the installed one)
    has what the Eagle backbone is built from: ``SiglipVisionModel`` and ``Qwen3Model``."""
    need = ".".join(map(str, MIN_TRANSFORMERS))
    if version is None:
        try:
            import transformers
        except ImportError:
            raise ConfigError(f"the Eagle backbone needs transformers >= {need} (SiglipVisionModel, Qwen3Model); "
                              f"it is not installed: pip install 'transformers>={need}'") from None
        version = transformers.__version__
    if _version_tuple(version) < MIN_TRANSFORMERS:
        raise ConfigError(f"the Eagle backbone needs transformers >= {need} (SiglipVisionModel, Qwen3Model); "
                          f"installed: {version}. Upgrade: pip install -U 'transformers>={need}'")


def eagle_key_map(name: str, select_layer: int | None = None) -> str | None:
    """The policy ``state_dict`` name of GR00T checkpoint tensor ``name``, or None for a tensor the
    backbone does not use (SigLIP's pooling ``head.*``, the tied ``lm_head``, and with
    ``select_layer`` the LLM layers at or after it). Names outside ``backbone.eagle_model.``
    (the action head's, ``backbone.eagle_linear.*`` of a ``project_to_dim`` checkpoint) and
    unknown Eagle names raise ``ValueError``: an importer must not drop them silently."""
    if not name.startswith(GR00T_PREFIX):
        raise ValueError(f"{name!r} is not an Eagle tensor of a GR00T checkpoint (expected {GR00T_PREFIX}*)")
    rest = name[len(GR00T_PREFIX):]
    if rest in ("mlp1.0.weight", "mlp1.0.bias"):
        return "backbone.projector." + rest.rsplit(".", 1)[1]
    known, target = map_vision_and_llm(rest, select_layer)
    if known:
        return target
    raise ValueError(f"{name!r}: unknown Eagle tensor (this backbone has SigLIP, mlp1 = one Linear and "
                     f"a Qwen3 LLM; no pixel shuffle, no RADIO tower)")


def map_vision_and_llm(rest: str, select_layer: int | None) -> tuple[bool, str | None]:
    """``(known, target)`` for an Eagle (2.5 or 3) tensor name below the checkpoint's prefix, for the
    parts both share: the SigLIP tower (``vision_model.[vision_model.]X`` -> ``backbone.vision.X``;
    its pooling ``head.*`` is unused) and the Qwen3 LLM (``language_model.model.X`` ->
    ``backbone.llm.X``; the tied/unused ``lm_head`` and, with ``select_layer``, the layers at or after
    it are dropped: target None). ``known`` False: not one of these names."""
    if rest.startswith("vision_model."):
        rest = rest[len("vision_model."):]
        if rest.startswith("vision_model."):   # older transformers' SigLIP: an inner module
            rest = rest[len("vision_model."):]
        if rest.startswith("head."):
            return True, None                  # the pooling head: built by SigLIP, unused by Eagle
        if rest.split(".", 1)[0] in ("embeddings", "encoder", "post_layernorm"):
            return True, "backbone.vision." + rest
    elif rest == "language_model.lm_head.weight":
        return True, None
    elif rest.startswith("language_model.model."):
        rest = rest[len("language_model.model."):]
        layer = _LAYER.match(rest)
        if layer and select_layer is not None and int(layer.group(1)) >= select_layer:
            return True, None
        return True, "backbone.llm." + rest
    return False, None


def _clean(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in raw.items() if not k.startswith("_") and k not in _NOT_STORED}


def eagle_config(raw: dict[str, Any], select_layer: int) -> dict[str, Any]:
    """The stored backbone config from an Eagle 2.5 ``config.json`` dict (or an already stored
    one): checked, cleaned, the LLM cut to ``select_layer`` layers. Raises :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the Eagle config must be a mapping, got {type(raw).__name__}")
    vision, text = raw.get("vision_config"), raw.get("text_config")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise ConfigError("the Eagle config needs vision_config and text_config mappings (Eagle 2.5's config.json)")
    if vision.get("model_type", "siglip_vision_model") != "siglip_vision_model":
        raise ConfigError(f"vision_config.model_type {vision.get('model_type')!r}: only SigLIP "
                          f"('siglip_vision_model') is supported")
    if text.get("model_type") != "qwen3":
        raise ConfigError(f"text_config.model_type {text.get('model_type')!r}: only Qwen3 ('qwen3') is supported")
    if not isinstance(raw.get("image_token_index"), int):
        raise ConfigError("the Eagle config has no integer image_token_index (the id of <IMG_CONTEXT>)")
    if raw.get("select_layer", -1) != -1:
        raise ConfigError(f"Eagle's select_layer (the vision feature layer) is {raw['select_layer']}; only -1 "
                          f"(SigLIP's last_hidden_state, as GR00T N1.5) is supported")
    if raw.get("use_pixel_shuffle", False):
        raise ConfigError("use_pixel_shuffle is true; only GR00T N1.5's layout (no pixel shuffle) is supported")
    if raw.get("mlp_connector_layers", 1) != 1:
        raise ConfigError(f"mlp_connector_layers is {raw['mlp_connector_layers']}; only 1 (mlp1 = one Linear, "
                          f"as GR00T N1.5) is supported")
    for key in ("hidden_size", "image_size", "patch_size", "num_hidden_layers"):
        if not isinstance(vision.get(key), int):
            raise ConfigError(f"vision_config.{key} is missing or not an integer")
    for key in ("hidden_size", "num_hidden_layers", "vocab_size"):
        if not isinstance(text.get(key), int):
            raise ConfigError(f"text_config.{key} is missing or not an integer")
    forced = raw.get("force_image_size")
    if forced is not None and forced != vision["image_size"]:
        raise ConfigError(f"force_image_size {forced} differs from vision_config.image_size {vision['image_size']}")
    out = cut_llm(raw, select_layer, raw.get("model_type", "eagle_2_5_vl"))
    out["vision_config"]["model_type"] = "siglip_vision_model"
    return out


def cut_llm(raw: dict[str, Any], select_layer: int, model_type: str) -> dict[str, Any]:
    """The stored form of a checked Eagle config (2.5 or 3): cleaned of private and remote-code keys,
    the LLM cut to ``select_layer`` layers (recorded as ``llm_select_layer``). Raises
    :class:`ConfigError` for a select layer the LLM does not have."""
    text = raw["text_config"]
    if isinstance(select_layer, bool) or not isinstance(select_layer, int) or select_layer < 1:
        raise ConfigError(f"the LLM select layer must be an integer >= 1, got {select_layer!r}")
    if select_layer > text["num_hidden_layers"]:
        raise ConfigError(f"select layer {select_layer} exceeds the LLM's {text['num_hidden_layers']} layers")
    stored = raw.get("llm_select_layer")
    if stored is not None and stored != text["num_hidden_layers"]:
        raise ConfigError(f"llm_select_layer {stored} differs from text_config.num_hidden_layers "
                          f"{text['num_hidden_layers']}")
    out = _clean(raw)
    out["model_type"] = model_type
    out["vision_config"] = _clean(raw["vision_config"])
    out["text_config"] = text_out = _clean(text)
    text_out["num_hidden_layers"] = select_layer          # the layers after the feature layer are dropped
    if isinstance(text_out.get("layer_types"), list):
        text_out["layer_types"] = text_out["layer_types"][:select_layer]
    out["select_layer"] = -1
    out["llm_select_layer"] = select_layer
    return out


def eagle_config_from_gr00t(gr00t_config: dict[str, Any], eagle_assets_config: dict[str, Any]) -> dict[str, Any]:
    """``PolicyConfig.backbone_hf_config`` of a GR00T N1.5 checkpoint: ``gr00t_config`` is its
    ``config.json`` (``backbone_cfg.select_layer``: the LLM layer the features come from),
    ``eagle_assets_config`` GR00T's ``eagle2_hg_model/config.json`` (not in the checkpoint).
    The result's ``llm_select_layer`` is what ``PolicyConfig.backbone_select_layer`` must be."""
    cfg = gr00t_config.get("backbone_cfg") if isinstance(gr00t_config, dict) else None
    if not isinstance(cfg, dict) or "select_layer" not in cfg:
        raise ConfigError("the GR00T config has no backbone_cfg.select_layer (is it a GR00T N1.5 config.json?)")
    if cfg.get("project_to_dim") is not None:
        raise ConfigError(f"backbone_cfg.project_to_dim is {cfg['project_to_dim']}: the extra eagle_linear "
                          f"projection is not supported (GR00T N1.5 has null)")
    if cfg.get("reproject_vision"):
        raise ConfigError("backbone_cfg.reproject_vision is true: not supported (GR00T N1.5 has false)")
    return eagle_config(eagle_assets_config, cfg["select_layer"])


def eagle_image_tokens(hf_config: dict[str, Any]) -> int:
    """``<IMG_CONTEXT>`` tokens per frame: one per SigLIP patch (no pixel shuffle): 256 at 224 px."""
    vision = (hf_config or {}).get("vision_config") or {}
    if not isinstance(vision.get("image_size"), int) or not isinstance(vision.get("patch_size"), int):
        raise ConfigError("backbone_hf_config needs vision_config.image_size and patch_size "
                          "(build the policy first: it stores the Eagle config)")
    return (vision["image_size"] // vision["patch_size"]) ** 2
