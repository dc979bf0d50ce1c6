"""GR00T-style checkpoint directories assembled from the parity fixtures in tests/data/.

The fixtures hold the action head, the Eagle backbone and the LARA LAM in separate files; a
real checkpoint holds them in one tensor table, often sharded. :func:`write_checkpoint` lays
them out as Hugging Face does (config.json, shards, model.safetensors.index.json).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

DATA = Path(__file__).resolve().parent.parent / "data"
N15 = DATA / "gr00t_n15_tiny"
LAM = DATA / "lara_lam_tiny"
EAGLE = N15 / "eagle"


def head_dir(variant: str) -> Path:
    return N15 / "lara" if variant == "lara" else N15


def write_checkpoint(out: Path, variant: str = "gr00t_n1_5", sharded: bool = True, lam: bool = True,
                     bf16: bool = False, drop: tuple[str, ...] = (), add: dict | None = None) -> Path:
    """A checkpoint directory of ``variant`` ("gr00t_n1_5" or "lara"): the head and the Eagle
    backbone (and for LARA its LAM) in one table. ``sharded``: one shard per part plus the index;
    ``bf16``: stored in bf16 as released checkpoints are; ``drop``/``add``: tensors removed / added."""
    out.mkdir(parents=True, exist_ok=True)
    parts = [load_file(str(head_dir(variant) / "model.safetensors")), load_file(str(EAGLE / "model.safetensors"))]
    if variant == "lara" and lam:
        parts.append(load_file(str(LAM / "model.safetensors")))
        shutil.copytree(LAM / "latent_motion_tokenizer", out / "latent_motion_tokenizer", dirs_exist_ok=True)
        (out / "latent_motion_tokenizer" / "model.safetensors").unlink()  # the tensors are in the table
    for part in parts:
        for name in drop:
            part.pop(name, None)
    if add:
        parts.append(dict(add))
    for part in parts:
        if bf16:
            for name, t in part.items():
                if t.is_floating_point():
                    part[name] = t.bfloat16()
    shutil.copy(head_dir(variant) / "config.json", out / "config.json")
    if not sharded:
        save_file({k: v for p in parts for k, v in p.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
        return out
    weight_map = {}
    for i, part in enumerate(parts):
        name = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
        save_file(part, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def full_size_n15() -> tuple[dict, dict, dict]:
    """GR00T N1.5-3B's config.json (the published sizes), the tensor shapes the importer reads
    from its headers, and its Eagle 2.5 config (SigLIP-2 400M + Qwen3-1.7B): no weights."""
    head = json.loads((N15 / "config.json").read_text())
    head["action_head_cfg"].update(backbone_embedding_dim=2048, hidden_size=1024, input_embedding_dim=1536,
                                   num_target_vision_tokens=32)
    head["action_head_cfg"]["diffusion_model_cfg"].update(attention_head_dim=48, cross_attention_dim=2048,
                                                          num_attention_heads=32, num_layers=16, output_dim=1024)
    head["action_head_cfg"]["vl_self_attention_cfg"].update(attention_head_dim=64, num_attention_heads=32,
                                                            num_layers=4)
    head["backbone_cfg"]["select_layer"] = 12
    head["hidden_size"] = 2048
    shapes = {"action_head.action_encoder.W1.W": (32, 32, 1536),
              "action_head.model.timestep_encoder.timestep_embedder.linear_1.weight": (1536, 256),
              "action_head.position_embedding.weight": (1024, 1536),
              "action_head.future_tokens.weight": (32, 1536)}
    eagle = json.loads((EAGLE / "eagle2_hg_model" / "config.json").read_text())
    eagle.update(force_image_size=224, image_token_index=151669)
    eagle["vision_config"].update(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16,
                                  intermediate_size=4304, image_size=224, patch_size=14)
    eagle["text_config"].update(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16,
                                num_key_value_heads=8, head_dim=128, intermediate_size=6144, vocab_size=151680)
    return head, shapes, eagle


N16 = DATA / "gr00t_n16_tiny"


def full_size_n16() -> tuple[dict, dict, dict]:
    """GR00T N1.6's base config.json (the published sizes), the tensor shapes the importer reads and its
    Eagle 3 VL config (SigLIP2 400M at 256 patches + Qwen3-1.7B): no weights."""
    cfg = json.loads((N16 / "config.json").read_text())
    cfg.update(action_horizon=50, hidden_size=1024, input_embedding_dim=1536, backbone_embedding_dim=2048,
               max_state_dim=128, max_action_dim=128, select_layer=16, shortest_image_edge=256)
    cfg["diffusion_model_cfg"].update(attention_head_dim=48, num_attention_heads=32, num_layers=32, output_dim=1024)
    shapes = {"action_head.action_encoder.W1.W": (32, 128, 1536),
              "action_head.model.timestep_encoder.timestep_embedder.linear_1.weight": (1536, 256),
              "action_head.model.transformer_blocks.0.attn1.to_k.weight": (1536, 2048),
              "action_head.position_embedding.weight": (1024, 1536)}
    eagle = json.loads((N16 / "eagle" / "config.json").read_text())
    eagle["image_token_index"] = 151669
    eagle["vision_config"].update(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16,
                                  intermediate_size=4304, num_patches=256)
    eagle["text_config"].update(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16,
                                num_key_value_heads=8, head_dim=128, intermediate_size=6144, vocab_size=151680)
    return cfg, shapes, eagle
