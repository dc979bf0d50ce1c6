"""``import_gr00t``: a GR00T N1.5 or LARA release checkpoint directory -> a lara-g1 policy bundle.

Every checkpoint tensor is accounted for before anything is loaded: it maps to exactly one
policy tensor of the same shape, or to the LAM, or to the alignment projection, or is one of
the few known unused tensors (SigLIP's pooling head, the LLM layers after the feature layer).
A missing, extra or mis-shaped tensor stops the import with its name and both shapes. Then
the tensors stream in one at a time (upcast to fp32) into the built policy, so the peak
memory is the policy plus one tensor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lara_g1.core.embodiment import load_embodiment
from lara_g1.core.errors import ConfigError
from lara_g1.lara.checkpoints.gr00t import (
    _DIT_FF_NORM,
    _PER_EMBODIMENT,
    ALIGN_PREFIX,
    BACKBONE_PREFIX,
    HEAD,
    LAM_PREFIX,
    Gr00tN15,
    Translation,
    family_of,
    head_key,
    swap_timestep_halves,
)
from lara_g1.lara.checkpoints.hf import CheckpointError, HFCheckpoint

ASSETS_SUBDIR = "eagle2_hg_model"
#: checkpoint tensors with no inference role: N1.6's state-dropout token (training only)
DROPPED = {"action_head.mask_token"}
LAM_SUBDIR = "latent_motion_tokenizer"


@dataclass
class ImportReport:
    out: Path
    variant: str
    tensors: int
    parameters: dict[str, int]
    source_row: int
    notes: list[str] = field(default_factory=list)


def _assets_dir(assets: str | Path | None) -> Path:
    if assets is None:
        raise CheckpointError(f"GR00T ships the Eagle tokenizer and config in its package, not in the checkpoint "
                              f"(N1.5: gr00t/model/backbone/{ASSETS_SUBDIR}/, N1.6: "
                              f"gr00t/model/modules/nvidia/Eagle-Block2A-2B-v2/): pass --assets DIR")
    path = Path(assets)
    if (path / ASSETS_SUBDIR).is_dir():
        path = path / ASSETS_SUBDIR
    if not (path / "config.json").is_file():
        raise CheckpointError(f"--assets {assets}: no config.json (the Eagle config) there or in {ASSETS_SUBDIR}/")
    return path


def _swap_rows(t: torch.Tensor, a: int, b: int) -> torch.Tensor:
    if a == b:
        return t
    t = t.clone()
    t[[a, b]] = t[[b, a]]
    return t


def policy_config(tr: Translation, hf_config: dict[str, Any], embodiment: str, max_text_len: int,
                  src: str = "config.json", family=Gr00tN15, **overrides: Any):
    """The bundle's PolicyConfig: the translated action head on the backbone ``hf_config``."""
    from lara_g1.lara.model.config import PolicyConfig

    fields: dict[str, Any] = {
        **tr.fields, "preset": tr.variant, "embodiment": embodiment, **family.backbone_fields(hf_config),
        "backbone_select_layer": hf_config["llm_select_layer"], "backbone_hf_config": hf_config,
        "max_text_len": max_text_len, **overrides,
    }
    try:
        return PolicyConfig.from_dict(fields, source=f"the translation of {src}")
    except ConfigError as exc:
        raise CheckpointError(f"{src}: the translated config is not valid: {exc}") from exc


def import_gr00t(checkpoint: str | Path, out: str | Path, *, embodiment: str = "g1", row: int | str | None = None,
                 assets: str | Path | None = None, lam_encoder: str | Path | None = None, no_lam: bool = False,
                 max_text_len: int = 32, action_steps: int | None = None, camera_size: tuple[int, int] | None = None,
                 progress: bool = True) -> ImportReport:
    """Import ``checkpoint`` and write a bundle to ``out``; see the module docstring."""
    from lara_g1.lara.bundle import save_bundle
    from lara_g1.lara.model.policy import LaraPolicy, parameter_counts
    from lara_g1.lara.processing import NormStats

    ckpt = HFCheckpoint(checkpoint)
    src = str(ckpt.path / "config.json")
    family = family_of(ckpt.config, src)
    aux = family.read_aux(ckpt.path)
    tr = family.translate(ckpt.config, {n: i.shape for n, i in ckpt.tensors.items()}, row, src, aux)
    emb = load_embodiment(embodiment)
    assets_dir = _assets_dir(assets)
    assets_config = json.loads((assets_dir / "config.json").read_text())
    try:
        hf_config = family.backbone_config(ckpt.config, assets_config)
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt.path}: {exc}") from exc
    processing, gr00t_stats = family.processing(aux, tr.tag, emb)
    overrides: dict[str, Any] = dict(processing)
    if action_steps is not None:
        overrides["action_steps"] = action_steps
    if camera_size is not None:
        overrides["camera_size"] = list(camera_size)
    config = policy_config(tr, hf_config, embodiment, max_text_len, src, family, **overrides)
    try:
        policy = LaraPolicy(config, load_backbone_weights=False)
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt.path}: the checkpoint does not fit embodiment {embodiment!r}: {exc}") from exc

    # account for every tensor before loading any
    expected = policy.state_dict()
    select = hf_config["llm_select_layer"]
    targets: dict[str, str] = {}
    lam_names, align_names, dropped, unknown = set(), set(), [], []
    for name in ckpt.tensors:
        if name.startswith(LAM_PREFIX):
            lam_names.add(name)
        elif name.startswith(ALIGN_PREFIX):
            align_names.add(name)
        elif name in DROPPED:
            dropped.append(name)
        elif name.startswith(BACKBONE_PREFIX):
            try:
                target = family.backbone_key(name, select)
            except ValueError as exc:
                raise CheckpointError(f"{ckpt.path}: {exc}") from exc
            if target is None:
                dropped.append(name)
            else:
                targets[name] = target
        elif name.startswith(HEAD) and head_key(name) is not None:
            targets[name] = head_key(name)
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"{ckpt.path}: unexpected tensors {[(n, list(ckpt.shape(n))) for n in unknown[:6]]}"
                              f"{' ...' if len(unknown) > 6 else ''}: not part of a {tr.variant} checkpoint")
    extra = sorted(n for n, t in targets.items() if t not in expected)
    if extra:
        raise CheckpointError(f"{ckpt.path}: tensors with no place in the model built from its config: "
                              f"{[(n, list(ckpt.shape(n))) for n in extra[:6]]}")
    constants = {k for k in expected if _DIT_FF_NORM.match(k)}
    covered = set(targets.values())
    missing = sorted(set(expected) - covered - constants)
    if missing:
        raise CheckpointError(f"{ckpt.path}: missing tensors (the model needs "
                              f"{[(k, list(expected[k].shape)) for k in missing[:6]]}"
                              f"{' ...' if len(missing) > 6 else ''}; {len(missing)} in all)")
    for name, target in targets.items():
        if tuple(ckpt.shape(name)) != tuple(expected[target].shape):
            raise CheckpointError(f"{ckpt.path}: tensor {name!r} has shape {list(ckpt.shape(name))} but "
                                  f"{target!r} needs {list(expected[target].shape)}")
    if tr.variant == "lara" and not no_lam:
        if not lam_names:
            raise CheckpointError(f"{ckpt.path}: a LARA checkpoint without action_head.latent_motion_tokenizer.* "
                                  f"tensors; pass --no-lam to import the policy alone")
        if lam_encoder is None:
            raise CheckpointError("the LARA release's LAM needs its frozen ViT-MAE, which no checkpoint stores: pass "
                                  "--lam-encoder DIR (facebook/vit-mae-large as saved by transformers), or --no-lam")

    # stream the weights in
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=ckpt.nbytes(set(targets)), unit="B", unit_scale=True, desc="lara-import", dynamic_ncols=True)
    g1_row, width = emb.embodiment_id, config.width
    with torch.no_grad():
        for name, tensor in ckpt.stream(set(targets)):
            target = targets[name]
            if target == "head.action_encoder.w2.weight":
                tensor = swap_timestep_halves(tensor, width)
            if _PER_EMBODIMENT.match(target):
                tensor = _swap_rows(tensor, g1_row, tr.source_row)
            expected[target].copy_(tensor)
            if bar is not None:
                bar.update(ckpt.nbytes({name}))
            del tensor
        for k in constants:  # GR00T's feed-forward LayerNorm has no affine parameters
            expected[k].fill_(1.0 if k.endswith("weight") else 0.0)
    if bar is not None:
        bar.close()

    lam, align = None, None
    if tr.variant == "lara" and not no_lam:
        lam = _import_lam(ckpt, lam_names, lam_encoder)
    if align_names:
        align = _import_alignment(ckpt, align_names, config.width)
    # not AutoTokenizer: the assets' config.json names Eagle's remote code, which must not run
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(assets_dir))
    policy.eval()
    source = {"checkpoint": str(ckpt.path), "model_type": ckpt.config.get("model_type"), "variant": tr.variant,
              "source_row": tr.source_row, "g1_row": g1_row, "dropped": dropped}
    if gr00t_stats is not None:   # the checkpoint's statistics for this very embodiment
        stats = NormStats.from_dict(gr00t_stats, emb.dim)
    else:                         # placeholders until post-training computes the demonstrations'
        stats = NormStats.from_embodiment(emb, config.relative_action_groups, steps=config.horizon)
    save_bundle(out, policy, config, stats, lam=lam, tokenizer=tokenizer,
                extra={"imported": source, "untrained_stats": gr00t_stats is None})
    if align is not None:
        from lara_g1.lara.train.alignment import save_alignment
        save_alignment(align, Path(out) / "lam")
    return ImportReport(Path(out), tr.variant, len(targets), parameter_counts(policy), tr.source_row,
                        tr.notes + [f"dropped (unused by GR00T too): {len(dropped)} tensors"])


def _import_lam(ckpt: HFCheckpoint, names: set[str], lam_encoder: str | Path):
    from lara_g1.lara.lam.moto import moto_from_gr00t_tensors

    cfg_file = ckpt.path / LAM_SUBDIR / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{cfg_file}: missing (the LARA checkpoint's latent-motion tokenizer config)")
    tensors = dict(ckpt.stream(names))
    return moto_from_gr00t_tensors(tensors, json.loads(cfg_file.read_text()), lam_encoder, source=str(ckpt.path))


def _import_alignment(ckpt: HFCheckpoint, names: set[str], width: int):
    from lara_g1.lara.train.alignment import AlignmentHead

    weight = ckpt.shape(ALIGN_PREFIX + "weight")
    if weight[1] != width:
        raise CheckpointError(f"{ckpt.path}: {ALIGN_PREFIX}weight has shape {list(weight)}; the DiT is {width} wide")
    head = AlignmentHead(width, weight[0])
    state = {n[len(ALIGN_PREFIX):]: t for n, t in ckpt.stream(names)}
    head.proj.load_state_dict(state, strict=True)
    return head
