"""The policy bundle: the directory that moves between training, export and serving.

Layout (docs/POLICY.md, "The policy bundle")::

    config.json        format_version, lara_version, model_id, policy (PolicyConfig), embodiment
                       (its layout at save time), instructions, weights_sha256, extra
    model.safetensors  the policy's state_dict (backbone included, so serving needs no download)
    stats.json         normalisation statistics (lara.processing.NormStats, q01/q99; per-step
                       relative-action statistics when the config has relative action groups)
    tokenizer/         the transformers tokenizer (Eagle backbone only)
    lam/               the latent action model (training only): model.safetensors + config.json
                       (format_version, class, config); lara.lam.io.load_lam reads it
    onnx/ trt/ manifest.json   written by lara-export

Loading checks the format version, the embodiment, the weights' checksum, and every tensor's
name and shape against the config; each failure raises :class:`BundleError` saying exactly
what is wrong. Files are written to temporary names and renamed, so an interrupted save
never leaves a half-written file under a final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from lara_g1.core.embodiment import EmbodimentError, load_embodiment
from lara_g1.core.errors import LaraError
from lara_g1.core.observation import Observation
from lara_g1.lara import __version__
from lara_g1.lara.model.config import ConfigError, PolicyConfig
from lara_g1.lara.model.policy import LaraPolicy
from lara_g1.lara.processing import NormStats, Preprocessor, StatsError

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "stats.json"
TOKENIZER_DIR = "tokenizer"
LAM_DIR = "lam"


class BundleError(LaraError):
    """A bundle that cannot be loaded or written; the message names the file and the problem."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` when the block succeeds."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(target: Path, data: Any) -> None:
    with _atomic(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def _save_tensors(target: Path, module: nn.Module) -> None:
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, value in module.state_dict().items():
        t = value.detach().cpu().contiguous()
        if t.data_ptr() in seen:  # tied weights: safetensors stores each storage once
            t = t.clone()
        seen.add(t.data_ptr())
        tensors[name] = t
    with _atomic(target) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def save_bundle(path: str | Path, policy: LaraPolicy, config: PolicyConfig, stats: NormStats | dict,
                lam: nn.Module | None = None, extra: dict | None = None, instructions: Sequence[str] | None = None,
                tokenizer=None) -> Path:
    """Write ``policy`` (+ optional ``lam``) as a bundle at ``path`` and return the path.

    ``stats``: :class:`NormStats` or its dict form. ``extra``: JSON-able training info kept in
    config.json. ``instructions``: the task instructions seen in training (default: the
    config's default instruction). ``tokenizer``: the transformers tokenizer of an Eagle
    backbone (default: loaded from ``config.backbone_path``)."""
    path = Path(path)
    built_from = getattr(policy, "config", None)
    if built_from is not None and built_from != config:
        differing = sorted(k for k, v in config.to_dict().items() if built_from.to_dict().get(k) != v)
        raise BundleError(f"the policy was built from a different config than the one given: {differing}; "
                          f"the bundle would not load")
    try:
        json.dumps({"extra": extra, "instructions": list(instructions or [])})
    except (TypeError, ValueError) as exc:
        raise BundleError(f"extra and instructions must be JSON-serialisable: {exc}") from exc
    embodiment = load_embodiment(config.embodiment)
    if not isinstance(stats, NormStats):
        try:
            stats = NormStats.from_dict(stats, embodiment.dim)
        except StatsError as exc:
            raise BundleError(f"cannot save the normalisation stats: {exc}") from exc
    path.mkdir(parents=True, exist_ok=True)
    weights = path / WEIGHTS_FILE
    _save_tensors(weights, policy)
    digest = _sha256(weights)
    _write_json(path / STATS_FILE, stats.to_dict())
    if config.uses_hf_tokenizer:
        if tokenizer is None:
            if not config.backbone_path:
                raise BundleError("an Eagle-backbone bundle needs its tokenizer: pass tokenizer= or set backbone_path")
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(config.backbone_path, trust_remote_code=False)
        shutil.rmtree(path / TOKENIZER_DIR, ignore_errors=True)
        tokenizer.save_pretrained(str(path / TOKENIZER_DIR))
    if lam is not None:
        (path / LAM_DIR).mkdir(exist_ok=True)
        _save_tensors(path / LAM_DIR / WEIGHTS_FILE, lam)
        lam_config = getattr(lam, "config", None)
        _write_json(path / LAM_DIR / CONFIG_FILE, {
            "format_version": FORMAT_VERSION,
            "class": f"{type(lam).__module__}.{type(lam).__qualname__}",
            "config": lam_config.to_dict() if hasattr(lam_config, "to_dict") else None,
        })
    _write_json(path / CONFIG_FILE, {
        "format_version": FORMAT_VERSION,
        "lara_version": __version__,
        "model_id": f"lara-{config.preset}-{digest[:12]}",
        "policy": config.to_dict(),
        "embodiment": embodiment.to_dict(),
        "instructions": list(instructions) if instructions else [config.default_instruction],
        "weights_sha256": digest,
        "extra": extra or {},
    })
    return path


@dataclass
class PolicyBundle:
    """A loaded bundle: the policy in eval mode and the processing that surrounds it."""

    path: Path
    config: PolicyConfig = field(repr=False)
    policy: LaraPolicy = field(repr=False)
    stats: NormStats = field(repr=False)
    preprocessor: Preprocessor = field(repr=False)
    model_id: str
    instructions: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = field(default=None, repr=False)   # the transformers tokenizer (Eagle backbone)

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def infer(self, observations: Sequence[Observation], noise: np.ndarray | None = None) -> np.ndarray:
        """Action chunks ``[B, S, 28]`` float32 in embodiment units, S = ``action_steps`` (None: the
        horizon H). ``noise``: ``[B, H, max_action_dim]`` standard normal; None draws fresh noise.
        Relative action groups decode against the observations' states."""
        inputs = self.preprocessor(observations)
        cfg, batch = self.config, len(observations)
        shape = (batch, cfg.horizon, cfg.max_action_dim)
        if noise is None:
            noise = np.random.default_rng().standard_normal(shape, dtype=np.float32)
        noise = np.asarray(noise, dtype=np.float32)
        if noise.shape != shape:
            raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
        t = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            actions = self.policy(t["pixel_values"], t["input_ids"], t["attention_mask"], t["state"],
                                  t["embodiment_id"], torch.from_numpy(noise).to(self.device))
        return self.preprocessor.postprocess(actions.float().cpu().numpy(), self.preprocessor.raw_states(observations))

    def sample_chunk(self, image: np.ndarray, state: np.ndarray, instruction: str | None = None,
                     noise: np.ndarray | None = None) -> np.ndarray:
        """One chunk ``[S, 28]`` float32 (S = ``action_steps``, None: the horizon H) from one frame of the
        bundle's camera, the 28-D state and an instruction (None: the default). ``noise``: ``[H, 32]``
        or ``[1, H, 32]``."""
        if noise is not None:
            noise = np.asarray(noise, dtype=np.float32)
            if noise.ndim == 2:
                noise = noise[None]
        obs = Observation(images={self.config.cameras[0]: image}, state=state, instruction=instruction)
        return self.infer([obs], noise)[0]


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise BundleError(f"{path}: missing ({what})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({what}): {exc}") from exc


def read_bundle_config(path: str | Path) -> dict[str, Any]:
    """config.json of a bundle, with its format version and policy config checked (no weights read)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no bundle directory there")
    raw = _read_json(path / CONFIG_FILE, "the bundle config")
    if not isinstance(raw, dict):
        raise BundleError(f"{path / CONFIG_FILE}: expected a JSON object")
    version = raw.get("format_version")
    if version is None:
        raise BundleError(f"{path / CONFIG_FILE}: no format_version; not a lara bundle")
    if version != FORMAT_VERSION:
        raise BundleError(f"{path / CONFIG_FILE}: bundle format_version {version!r} (lara "
                          f"{raw.get('lara_version', '?')}); this lara {__version__} reads format {FORMAT_VERSION}")
    for key in ("policy", "embodiment", "model_id"):
        if key not in raw:
            raise BundleError(f"{path / CONFIG_FILE}: missing {key!r}")
    try:
        raw["policy_config"] = PolicyConfig.from_dict(raw["policy"], source=str(path / CONFIG_FILE))
    except (ConfigError, TypeError) as exc:
        raise BundleError(f"invalid policy config: {exc}") from exc
    return raw


def _check_embodiment(path: Path, raw: dict[str, Any], config: PolicyConfig) -> None:
    try:
        embodiment = load_embodiment(config.embodiment)
    except EmbodimentError as exc:   # also an unknown embodiment
        raise BundleError(f"{path / CONFIG_FILE}: embodiment {config.embodiment!r} does not load: {exc}") from exc
    saved, current = raw["embodiment"], embodiment.to_dict()
    if not isinstance(saved, dict):
        raise BundleError(f"{path / CONFIG_FILE}: 'embodiment' must be an object")
    for key in ("name", "embodiment_id", "dim", "joint_names"):
        if saved.get(key) != current[key]:
            raise BundleError(f"{path / CONFIG_FILE}: the bundle was trained for embodiment {key} "
                              f"{saved.get(key)!r} but configs/embodiment/{config.embodiment}.yaml has {current[key]!r}")


def _load_weights(path: Path, expected: dict[str, torch.Tensor], digest: str | None) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        if (path / "manifest.json").is_file():
            raise BundleError(f"{weights}: missing: {path} is a serving-only bundle (lara-export --deploy); "
                              f"serve it with --engine ort or trt, or use the full bundle for torch and training")
        raise BundleError(f"{weights}: missing (the policy weights)")
    if digest is not None and _sha256(weights) != digest:
        raise BundleError(f"{weights}: sha256 does not match config.json's weights_sha256; the file is "
                          f"corrupt or was replaced")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{weights}: not a readable safetensors file: {exc}") from exc
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise BundleError(f"{weights}: tensor names do not match the config: missing {missing[:8]}"
                          f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                          f"{' ...' if len(unexpected) > 8 else ''}")
    for name, ref in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise BundleError(f"{weights}: tensor {name!r} has shape {list(got.shape)} but the config needs "
                              f"{list(ref.shape)}")
        if got.dtype != ref.dtype:
            tensors[name] = got.to(ref.dtype)
    return tensors


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> PolicyBundle:
    """Load and check a bundle; the policy comes back in eval mode on ``device``."""
    path = Path(path)
    raw = read_bundle_config(path)
    config: PolicyConfig = raw["policy_config"]
    _check_embodiment(path, raw, config)
    embodiment = load_embodiment(config.embodiment)
    try:
        stats = NormStats.from_dict(_read_json(path / STATS_FILE, "normalisation stats"), embodiment.dim)
    except StatsError as exc:
        raise BundleError(f"{path / STATS_FILE}: {exc}") from exc
    tokenizer = None
    if config.uses_hf_tokenizer:
        tok_dir = path / TOKENIZER_DIR
        if not tok_dir.is_dir():
            raise BundleError(f"{tok_dir}: missing (the Eagle backbone's tokenizer)")
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    try:
        policy = LaraPolicy(config, load_backbone_weights=False)
    except ConfigError as exc:
        raise BundleError(f"{path / CONFIG_FILE}: cannot build the policy: {exc}") from exc
    tensors = _load_weights(path, policy.state_dict(), raw.get("weights_sha256"))
    policy.load_state_dict(tensors, strict=True)
    policy.eval().to(device)
    instructions = raw.get("instructions") or [config.default_instruction]
    return PolicyBundle(path=path, config=config, policy=policy, stats=stats,
                        preprocessor=Preprocessor(config, stats, tokenizer), model_id=str(raw["model_id"]),
                        instructions=list(instructions), extra=dict(raw.get("extra") or {}), tokenizer=tokenizer)


def create_random_bundle(path: str | Path, preset: str = "tiny", seed: int = 0, **overrides: Any) -> Path:
    """An untrained but valid bundle (seeded weights, stats = the joint limits) for tests of
    export, serving and the robot. ``overrides`` change config fields (e.g. ``horizon``)."""
    config = PolicyConfig.from_preset(preset, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = LaraPolicy(config)
    embodiment = load_embodiment(config.embodiment)
    stats = NormStats.from_embodiment(embodiment, config.relative_action_groups, steps=config.horizon)
    return save_bundle(path, policy, config, stats, extra={"untrained": True, "seed": seed})
