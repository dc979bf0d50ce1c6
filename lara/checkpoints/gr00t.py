"""GR00T-family checkpoints: which lara-g1 config and which tensor each checkpoint tensor becomes.

One :class:`Family` per checkpoint family (``model_type`` in config.json): its config
translation and its key map. GR00T N1.5 and the LARA release (GR00T N1.5 + LARA) share
``gr00t_n1_5``; the variant is told apart by its keys. What differs from lara-g1's own
layout, and how each difference is carried (docs/IMPORT.md has the table):

- names: ``action_head.model.transformer_blocks.i.attn1.to_out.0`` -> ``head.dit.blocks.i.attn.to_out`` ...
- the action encoder's sinusoid is [sin, cos] in GR00T and [cos, sin] here: the two halves of
  W2's timestep rows are swapped;
- the DiT's feed-forward LayerNorm has no affine parameters in GR00T: weight 1, bias 0 here;
- the timestep sinusoid (``timestep_freq_shift`` 1), the future tokens (``num_future_tokens``)
  and the alignment read-out (``align_hidden_layer``) are config fields;
- embodiment rows: the checkpoint row chosen for the G1 and the G1's row swap places, so
  every pre-trained row is kept.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lara_g1.lara.checkpoints.hf import CheckpointError

HEAD = "action_head."
LAM_PREFIX = "action_head.latent_motion_tokenizer."
ALIGN_PREFIX = "action_head.pred_latent_motion_head."
BACKBONE_PREFIX = "backbone."

# GR00T N1.5 action head -> LaraPolicy state_dict names (applied in order, first match wins)
_HEAD_RULES: list[tuple[str, str]] = [
    (r"action_head\.vlln\.(weight|bias)", r"adapter.norm.\1"),
    (r"action_head\.vl_self_attention\.transformer_blocks\.(\d+)\.norm1\.(weight|bias)", r"adapter.layers.\1.norm1.\2"),
    (r"action_head\.vl_self_attention\.transformer_blocks\.(\d+)\.norm3\.(weight|bias)", r"adapter.layers.\1.norm2.\2"),
    (r"action_head\.vl_self_attention\.transformer_blocks\.(\d+)\.attn1\.to_([qkv])\.(weight|bias)",
     r"adapter.layers.\1.attn.to_\2.\3"),
    (r"action_head\.vl_self_attention\.transformer_blocks\.(\d+)\.attn1\.to_out\.0\.(weight|bias)",
     r"adapter.layers.\1.attn.to_out.\2"),
    (r"action_head\.vl_self_attention\.transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.(weight|bias)",
     r"adapter.layers.\1.ff.0.\2"),
    (r"action_head\.vl_self_attention\.transformer_blocks\.(\d+)\.ff\.net\.2\.(weight|bias)", r"adapter.layers.\1.ff.2.\2"),
    (r"action_head\.model\.transformer_blocks\.(\d+)\.norm1\.linear\.(weight|bias)",
     r"head.dit.blocks.\1.norm1.to_scale_shift.\2"),
    (r"action_head\.model\.transformer_blocks\.(\d+)\.attn1\.to_([qkv])\.(weight|bias)", r"head.dit.blocks.\1.attn.to_\2.\3"),
    (r"action_head\.model\.transformer_blocks\.(\d+)\.attn1\.to_out\.0\.(weight|bias)", r"head.dit.blocks.\1.attn.to_out.\2"),
    (r"action_head\.model\.transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.(weight|bias)", r"head.dit.blocks.\1.ff.0.\2"),
    (r"action_head\.model\.transformer_blocks\.(\d+)\.ff\.net\.2\.(weight|bias)", r"head.dit.blocks.\1.ff.2.\2"),
    (r"action_head\.model\.timestep_encoder\.timestep_embedder\.linear_1\.(weight|bias)",
     r"head.dit.timestep_encoder.mlp.0.\1"),
    (r"action_head\.model\.timestep_encoder\.timestep_embedder\.linear_2\.(weight|bias)",
     r"head.dit.timestep_encoder.mlp.2.\1"),
    (r"action_head\.model\.proj_out_([12])\.(weight|bias)", r"head.dit.proj_out_\1.\2"),
    (r"action_head\.(state_encoder|action_decoder)\.layer([12])\.W", r"head.\1.layer\2.weight"),
    (r"action_head\.(state_encoder|action_decoder)\.layer([12])\.b", r"head.\1.layer\2.bias"),
    (r"action_head\.action_encoder\.W([123])\.W", r"head.action_encoder.w\1.weight"),
    (r"action_head\.action_encoder\.W([123])\.b", r"head.action_encoder.w\1.bias"),
    (r"action_head\.position_embedding\.weight", r"head.position_embedding.weight"),
    (r"action_head\.future_tokens\.weight", r"head.future_tokens.weight"),
]
_COMPILED = [(re.compile(p + "$"), r) for p, r in _HEAD_RULES]
# embodiment-specific tensors: first dimension = embodiment rows
_PER_EMBODIMENT = re.compile(r"head\.(state_encoder|action_decoder|action_encoder)\.")
# parameters with no GR00T counterpart and the constant that reproduces GR00T
_DIT_FF_NORM = re.compile(r"head\.dit\.blocks\.\d+\.norm2\.(weight|bias)$")


def head_key(name: str) -> str | None:
    """The LaraPolicy name of a GR00T action-head tensor (None: not an action-head weight)."""
    for pattern, repl in _COMPILED:
        if pattern.match(name):
            return pattern.sub(repl, name)
    return None


def swap_timestep_halves(w2: torch.Tensor, width: int) -> torch.Tensor:
    """W2 ``[E, 2*width, width]``: GR00T's timestep rows multiply [sin | cos]; ours [cos | sin]."""
    half = width // 2
    return torch.cat([w2[:, :width], w2[:, width + half:], w2[:, width: width + half]], dim=1)


@dataclass
class Translation:
    """What a checkpoint becomes: the config fields, the variant and where each tensor goes."""

    variant: str                      # "gr00t_n1_5", "lara" or "gr00t_n1_6"
    fields: dict[str, Any]            # PolicyConfig fields (without the backbone's)
    num_embodiments: int
    source_row: int                   # the checkpoint row that becomes the G1's row
    notes: list[str] = field(default_factory=list)
    tag: str | None = None            # the source row's embodiment tag (N1.6's embodiment_id.json)


def _get(cfg: dict[str, Any], path: str, source: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise CheckpointError(f"{source}: config.json has no {path!r}")
        node = node[part]
    return node


def _require(value: Any, expected: Any, what: str, source: str) -> None:
    if value != expected:
        raise CheckpointError(f"{source}: {what} is {value!r}; lara-g1 imports only {expected!r}")


class Gr00tN15:
    """GR00T N1.5 and the LARA release (``model_type`` ``gr00t_n1_5``)."""

    model_type = "gr00t_n1_5"
    #: the row GR00T fine-tuning uses for a new robot, per variant
    NEW_EMBODIMENT_ROW = {"gr00t_n1_5": 31, "lara": 40}

    @staticmethod
    def read_aux(path: Path) -> dict[str, Any]:
        """Files beside config.json the translation reads (none for N1.5)."""
        return {}

    @staticmethod
    def backbone_config(cfg: dict[str, Any], assets_config: dict[str, Any]) -> dict[str, Any]:
        from lara_g1.lara.model.eagle import eagle_config_from_gr00t

        return eagle_config_from_gr00t(cfg, assets_config)

    @staticmethod
    def backbone_fields(hf_config: dict[str, Any]) -> dict[str, Any]:
        return {"backbone": "eagle", "image_size": hf_config["vision_config"]["image_size"]}

    @staticmethod
    def processing(aux: dict[str, Any], tag: str | None, embodiment) -> tuple[dict[str, Any], dict | None]:
        """Processing fields and statistics for the embodiment: N1.5 leaves lara-g1's defaults."""
        return {}, None

    @staticmethod
    def backbone_key(name: str, select_layer: int) -> str | None:
        from lara_g1.lara.model.eagle import eagle_key_map

        return eagle_key_map(name, select_layer)

    @classmethod
    def translate(cls, cfg: dict[str, Any], shapes: Mapping[str, tuple[int, ...]], row: int | str | None,
                  src: str = "config.json", aux: dict[str, Any] | None = None) -> Translation:
        """The translation of a checkpoint's ``config.json`` and its tensor shapes (no tensor data)."""
        _require(cfg.get("model_type"), cls.model_type, "model_type", src)
        if isinstance(row, str):
            raise CheckpointError(f"--row {row!r}: GR00T N1.5 checkpoints name no embodiment rows; give a number")
        head = _get(cfg, "action_head_cfg", src)
        dit = _get(head, "diffusion_model_cfg", src)
        vlsa = _get(head, "vl_self_attention_cfg", src)
        _require(dit.get("norm_type"), "ada_norm", "action_head_cfg.diffusion_model_cfg.norm_type", src)
        _require(bool(dit.get("interleave_self_attention")), True, "interleave_self_attention", src)
        _require(dit.get("positional_embeddings"), None, "diffusion_model_cfg.positional_embeddings", src)
        _require(vlsa.get("positional_embeddings"), None, "vl_self_attention_cfg.positional_embeddings", src)
        _require(bool(head.get("use_vlln", True)), True, "action_head_cfg.use_vlln", src)
        _require(bool(head.get("add_pos_embed", True)), True, "action_head_cfg.add_pos_embed", src)
        _require(float(head.get("noise_beta_beta", 1.0)), 1.0, "action_head_cfg.noise_beta_beta", src)
        _require(_get(cfg, "backbone_cfg", src).get("project_to_dim"), None, "backbone_cfg.project_to_dim", src)

        names = set(shapes)
        lara = any(n.startswith(ALIGN_PREFIX) for n in names)
        variant = "lara" if lara else "gr00t_n1_5"
        w1 = "action_head.action_encoder.W1.W"
        if w1 not in names:
            raise CheckpointError(f"{src}: the checkpoint has no {w1!r}: not a GR00T N1.5 checkpoint (no action head)")
        rows = shapes[w1][0]
        width = int(dit["num_attention_heads"]) * int(dit["attention_head_dim"])
        if int(head["input_embedding_dim"]) != width:
            raise CheckpointError(f"{src}: input_embedding_dim {head['input_embedding_dim']} != DiT heads x head_dim "
                                  f"{width}")
        vl_dim = int(head["backbone_embedding_dim"])
        if int(vlsa["num_attention_heads"]) * int(vlsa["attention_head_dim"]) != vl_dim:
            raise CheckpointError(f"{src}: vl_self_attention heads x head_dim != backbone_embedding_dim {vl_dim}")
        future = "action_head.future_tokens.weight"
        fields: dict[str, Any] = {
            "horizon": int(head["action_horizon"]),
            "denoising_steps": int(head["num_inference_timesteps"]),
            "num_timestep_buckets": int(head["num_timestep_buckets"]),
            "noise_beta_alpha": float(head["noise_beta_alpha"]),
            "noise_s": float(head["noise_s"]),
            "timestep_freq_shift": 1,
            "timestep_embed_dim": shapes["action_head.model.timestep_encoder.timestep_embedder.linear_1.weight"][1],
            "max_state_dim": int(head["max_state_dim"]),
            "max_action_dim": int(head["max_action_dim"]),
            "num_embodiments": rows,
            "vl_dim": vl_dim,
            "cross_attention_dim": int(dit["cross_attention_dim"]),
            "adapter_layers": int(vlsa["num_layers"]),
            "adapter_heads": int(vlsa["num_attention_heads"]),
            "dit_layers": int(dit["num_layers"]),
            "dit_heads": int(dit["num_attention_heads"]),
            "dit_head_dim": int(dit["attention_head_dim"]),
            "dit_output_dim": int(dit["output_dim"]),
            "hidden_size": int(head["hidden_size"]),
            "max_seq_len": shapes["action_head.position_embedding.weight"][0],
            "num_future_tokens": shapes[future][0] if future in names else 0,
            "mask_vl_padding": True,
            "image_crop_scale": 0.95,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "tune_backbone": False,
        }
        if lara:
            fields["align_hidden_layer"] = int(head.get("latent_motion_hidden_layer", -3))
        if row is None:
            row = cls.NEW_EMBODIMENT_ROW[variant]
        if not 0 <= row < rows:
            raise CheckpointError(f"--row {row} is outside the checkpoint's {rows} embodiment rows")
        notes = [f"{variant}: {rows} embodiment rows; checkpoint row {row} becomes the G1's row"]
        if fields["num_future_tokens"]:
            notes.append(f"{fields['num_future_tokens']} future tokens")
        return Translation(variant, fields, rows, row, notes)


class Gr00tN16:
    """GR00T N1.6 (``model_type`` ``Gr00tN1d6``): Eagle 3 VL backbone, a LayerNorm-only adapter, a DiT whose
    cross-attention blocks alternate between the text and the image tokens, 128-wide state/action."""

    model_type = "Gr00tN1d6"
    AUX_FILES = ("processor_config.json", "statistics.json", "embodiment_id.json")

    @staticmethod
    def read_aux(path: Path) -> dict[str, Any]:
        """``processor_config.json``, ``statistics.json`` and ``embodiment_id.json`` (each optional)."""
        aux = {}
        for name in Gr00tN16.AUX_FILES:
            f = path / name
            if f.is_file():
                try:
                    aux[name] = json.loads(f.read_text())
                except json.JSONDecodeError as exc:
                    raise CheckpointError(f"{f}: not valid JSON: {exc}") from exc
        return aux

    @staticmethod
    def backbone_config(cfg: dict[str, Any], assets_config: dict[str, Any]) -> dict[str, Any]:
        from lara_g1.lara.model.eagle3 import eagle3_config_from_gr00t

        return eagle3_config_from_gr00t(cfg, assets_config)

    @staticmethod
    def backbone_fields(hf_config: dict[str, Any]) -> dict[str, Any]:
        return {"backbone": "eagle3"}

    @staticmethod
    def processing(aux: dict[str, Any], tag: str | None, embodiment) -> tuple[dict[str, Any], dict | None]:
        """The checkpoint's own processing of ``tag`` when it describes our joint groups, else N1.6's
        recipe for joint-space arms on the groups the embodiment has (:data:`G1_N16_PROCESSING`)."""
        groups = [g.name for g in embodiment.groups]
        fields, stats = n16_processing(aux, tag, groups, embodiment.dim)
        if fields:
            return fields, stats
        own = set(groups)
        return {"normalization": {g: m for g, m in G1_N16_PROCESSING["normalization"].items() if g in own},
                "relative_action_groups": [g for g in G1_N16_PROCESSING["relative_action_groups"] if g in own]}, None

    @staticmethod
    def backbone_key(name: str, select_layer: int) -> str | None:
        from lara_g1.lara.model.eagle3 import eagle3_key_map

        return eagle3_key_map(name, select_layer)

    @classmethod
    def translate(cls, cfg: dict[str, Any], shapes: Mapping[str, tuple[int, ...]], row: int | str | None,
                  src: str = "config.json", aux: dict[str, Any] | None = None) -> Translation:
        _require(cfg.get("model_type"), cls.model_type, "model_type", src)
        dit = _get(cfg, "diffusion_model_cfg", src)
        _require(dit.get("norm_type"), "ada_norm", "diffusion_model_cfg.norm_type", src)
        _require(bool(dit.get("interleave_self_attention")), True, "interleave_self_attention", src)
        _require(dit.get("positional_embeddings"), None, "diffusion_model_cfg.positional_embeddings", src)
        _require(bool(cfg.get("use_vlln", True)), True, "use_vlln", src)
        _require(bool(cfg.get("add_pos_embed", True)), True, "add_pos_embed", src)
        _require(float(cfg.get("noise_beta_beta", 1.0)), 1.0, "noise_beta_beta", src)
        _require(bool(cfg.get("reproject_vision", False)), False, "reproject_vision", src)
        w1 = "action_head.action_encoder.W1.W"
        if w1 not in shapes:
            raise CheckpointError(f"{src}: the checkpoint has no {w1!r}: not a GR00T N1.6 checkpoint (no action head)")
        rows = shapes[w1][0]
        width = int(dit["num_attention_heads"]) * int(dit["attention_head_dim"])
        if int(cfg["input_embedding_dim"]) != width:
            raise CheckpointError(f"{src}: input_embedding_dim {cfg['input_embedding_dim']} != DiT heads x head_dim "
                                  f"{width}")
        cross = shapes.get("action_head.model.transformer_blocks.0.attn1.to_k.weight")
        fields: dict[str, Any] = {
            "horizon": int(cfg["action_horizon"]),
            "denoising_steps": int(cfg["num_inference_timesteps"]),
            "num_timestep_buckets": int(cfg["num_timestep_buckets"]),
            "noise_beta_alpha": float(cfg["noise_beta_alpha"]),
            "noise_s": float(cfg["noise_s"]),
            "timestep_freq_shift": 1,
            "timestep_embed_dim": shapes["action_head.model.timestep_encoder.timestep_embedder.linear_1.weight"][1],
            "max_state_dim": int(cfg["max_state_dim"]),
            "max_action_dim": int(cfg["max_action_dim"]),
            "num_embodiments": rows,
            "vl_dim": int(cfg["backbone_embedding_dim"]),
            "cross_attention_dim": cross[1] if cross else int(cfg["backbone_embedding_dim"]),
            "adapter_layers": 0,          # N1.6: vlln only, no VL self-attention
            "adapter_heads": 1,
            "dit_layers": int(dit["num_layers"]),
            "dit_heads": int(dit["num_attention_heads"]),
            "dit_head_dim": int(dit["attention_head_dim"]),
            "dit_output_dim": int(dit["output_dim"]),
            "hidden_size": int(cfg["hidden_size"]),
            "max_seq_len": shapes["action_head.position_embedding.weight"][0],
            "num_future_tokens": 0,
            "mask_vl_padding": True,
            "vl_cross_attention": "alternate" if cfg.get("use_alternate_vl_dit", False) else "all",
            "attend_text_every_n_blocks": int(cfg.get("attend_text_every_n_blocks", 2)),
            "image_pipeline": "gr00t_n16",
            "shortest_image_edge": int(cfg.get("shortest_image_edge", 256)),
            "image_crop_scale": float(cfg.get("crop_fraction", 0.95)),
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "tune_backbone": False,
        }
        tags = (aux or {}).get("embodiment_id.json", {})
        if row is None:
            if "new_embodiment" not in tags:
                raise CheckpointError(f"{src}: no embodiment_id.json with a new_embodiment row beside it; give --row")
            row = "new_embodiment"
        if isinstance(row, str):
            if row not in tags:
                raise CheckpointError(f"--row {row!r} is not in embodiment_id.json (it names {sorted(tags)})")
            tag, row = row, int(tags[row])
        else:
            tag = next((name for name, r in tags.items() if r == row), None)
        if not 0 <= row < rows:
            raise CheckpointError(f"--row {row} is outside the checkpoint's {rows} embodiment rows")
        notes = [f"gr00t_n1_6: {rows} embodiment rows; checkpoint row {row} ({tag or 'unnamed'}) becomes the G1's row",
                 f"horizon {fields['horizon']}, {fields['dit_layers']} DiT blocks, cross-attention "
                 f"{fields['vl_cross_attention']}"]
        if "action_head.mask_token" in shapes:
            notes.append("action_head.mask_token (training-time state dropout) is not imported")
        return Translation("gr00t_n1_6", fields, rows, row, notes, tag=tag)


STAT_NAMES = ("min", "max", "mean", "std", "q01", "q99")


def n16_processing(aux: dict[str, Any], tag: str | None, groups: list[str], dim: int) -> tuple[dict[str, Any], dict | None]:
    """GR00T N1.6's processing of embodiment ``tag`` as PolicyConfig fields, and its statistics as our
    stats.json (None where the checkpoint does not describe this embodiment).

    Used only when the tag's state and action keys are exactly our joint groups in order (a lab
    that fine-tuned N1.6 on its own G1 with lara-g1's group names); otherwise the G1 default
    applies (:data:`G1_N16_PROCESSING`) and post-training supplies the statistics."""
    proc = (aux.get("processor_config.json") or {}).get("processor_kwargs", {})
    modality = (proc.get("modality_configs") or {}).get(tag or "")
    if not modality:
        return {}, None
    state, action = modality.get("state") or {}, modality.get("action") or {}
    if state.get("modality_keys") != groups or action.get("modality_keys") != groups:
        return {}, None
    range_mode = "q99" if proc.get("use_percentiles") else "min_max"
    sincos = set(state.get("sin_cos_embedding_keys") or []) if proc.get("apply_sincos_state_encoding", True) else set()
    state_mean_std = set(state.get("mean_std_embedding_keys") or [])
    action_mean_std = set(action.get("mean_std_embedding_keys") or [])
    normalization = {}
    for g in groups:
        if g in sincos:
            normalization[g] = "sin_cos"
        elif g in state_mean_std or g in action_mean_std:
            if (g in state_mean_std) != (g in action_mean_std):
                raise CheckpointError(f"embodiment {tag!r}: key {g!r} is mean/std for only one of state and action; "
                                      f"lara-g1 takes one mode per joint group")
            normalization[g] = "mean_std"
        else:
            normalization[g] = range_mode
    reps = action.get("action_configs") or []
    relative = [g for g, rep in zip(groups, reps) if proc.get("use_relative_action", True)
                and (rep or {}).get("rep") == "RELATIVE"]
    fields = {"normalization": normalization, "relative_action_groups": relative,
              "action_steps": len(action.get("delta_indices") or []) or None}
    raw = (aux.get("statistics.json") or {}).get(tag)
    stats = None
    if raw:
        try:
            stats = {part: {name: [v for g in groups for v in raw[part][g][name]] for name in STAT_NAMES}
                     for part in ("state", "action")}
            stats["relative"] = {g: raw["relative_action"][g] for g in relative}
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"statistics.json: embodiment {tag!r} lacks {exc} for its keys {groups}") from exc
        if len(stats["state"]["min"]) != dim:
            raise CheckpointError(f"statistics.json: embodiment {tag!r} has {len(stats['state']['min'])} state values, "
                                  f"the embodiment {dim}")
    return fields, stats


#: lara-g1's choice for the G1 on N1.6 when the checkpoint does not describe it: N1.6's recipe for
#: joint-space arms (sin/cos state, RELATIVE actions), min/max for the hands and the head
G1_N16_PROCESSING = {"normalization": {"left_arm": "sin_cos", "right_arm": "sin_cos"},
                     "relative_action_groups": ["left_arm", "right_arm"]}


FAMILIES = {Gr00tN15.model_type: Gr00tN15, Gr00tN16.model_type: Gr00tN16}


def family_of(config: dict[str, Any], src: str = "config.json"):
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise CheckpointError(f"{src}: model_type {model_type!r}; lara-import gr00t reads {sorted(FAMILIES)}")
    return FAMILIES[model_type]
