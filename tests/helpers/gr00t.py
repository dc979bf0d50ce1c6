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
