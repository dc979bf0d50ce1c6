"""Pre- and post-processing shared by every engine (torch, ort, trt). numpy only.

Normalisation, per joint group (``PolicyConfig.normalization``; GR00T's modes): ``q99`` (the
default) maps the dataset's [q01, q99] range to [-1, 1] and clips there (quantiles rather
than min/max, so a few outlier frames do not squash the useful range); ``min_max`` does the
same with [min, max]; ``mean_std`` standardises; ``binary`` maps x > 0.5 to 1, else 0.
Un-normalising clips the model output to [-1, 1] first (q99, min_max), so a chunk never
leaves the demonstrated range. Dimensions whose range is below 1e-6 (never moved in the
data) normalise to 0 and un-normalise to their midpoint (mean_std: the mean); GR00T passes
such a dimension's raw value through instead (docs/IMPORT.md).

Images: centre crop (``image_crop_scale``, GR00T: 0.95), bilinear resize (half-pixel centres) to
``image_size``, scale to [0, 1], then ``(x - image_mean) / image_std``; layout ``[B, 3, S, S]``.

Text: the stand-in backbone uses :class:`ByteTokenizer` (UTF-8 bytes, deterministic, no
vocabulary file); the Eagle backbone uses GR00T's chat-template prompt
(:class:`lara_g1.lara.prompt.Gr00tPrompt`) with the checkpoint's transformers tokenizer, left-padded
to template + image tokens + ``max_text_len``. Both pad to a fixed length so every engine sees one shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.core.errors import LaraError
from lara_g1.core.observation import Observation
from lara_g1.lara.model.config import PolicyConfig

STAT_KEYS = ("min", "max", "mean", "std", "q01", "q99")
NORM_MODES = ("q99", "min_max", "mean_std", "binary")
_DEGENERATE = 1e-6


class ObservationError(LaraError, ValueError):
    """An observation that cannot be turned into model inputs (wrong camera, shape, dtype, NaN)."""


class StatsError(LaraError, ValueError):
    """Normalisation statistics that are missing, the wrong size or not finite."""


class ByteTokenizer:
    """UTF-8 bytes -> ids: 0 pad, 1 bos, 2 eos, byte b -> b + 3 (vocabulary 259)."""

    PAD, BOS, EOS, OFFSET, VOCAB_SIZE = 0, 1, 2, 3, 259

    def __init__(self, max_len: int):
        if max_len < 3:
            raise ValueError(f"max_len must be >= 3 (bos, one byte, eos), got {max_len}")
        self.max_len = max_len

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids i64 [B, max_len], attention_mask i64 [B, max_len])``; long texts are cut."""
        ids = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            body = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)[: self.max_len - 2].astype(np.int64)
            row = np.concatenate([[self.BOS], body + self.OFFSET, [self.EOS]])
            ids[i, : len(row)] = row
        return ids, (ids != self.PAD).astype(np.int64)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> float32 ``[size, size, 3]`` in 0..255, bilinear with half-pixel centres
    (separable: rows first, then columns, touching only the source rows that are needed)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image.astype(np.float32)

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(size, dtype=np.float64) + 0.5) * (n_in / size) - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    fy = fy[:, None, None]
    rows = image[y0].astype(np.float32) * (1 - fy) + image[y1].astype(np.float32) * fy   # [size, W, 3]
    fx = fx[None, :, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


def center_crop(image: np.ndarray, scale: float) -> np.ndarray:
    """The centre ``scale`` of height and width (GR00T's eval-time crop, 0.95; 1.0: the image itself).
    Offsets round as torchvision's ``CenterCrop`` does."""
    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    ch, cw = max(int(h * scale), 1), max(int(w * scale), 1)
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return image[top: top + ch, left: left + cw]


def norm_modes(config: PolicyConfig, embodiment: Embodiment) -> np.ndarray:
    """One normalisation mode per joint (``config.normalization`` names joint groups; others q99)."""
    groups = {g.name: g for g in embodiment.groups}
    unknown = sorted(set(config.normalization) - set(groups))
    if unknown:
        raise StatsError(f"normalization names joint groups {unknown} that embodiment {embodiment.name!r} "
                         f"does not have; its groups: {sorted(groups)}")
    modes = np.full(embodiment.dim, "q99", dtype=object)
    for name, mode in config.normalization.items():
        modes[groups[name].slice] = mode
    return modes


@dataclass
class FeatureStats:
    """Per-dimension statistics of one feature (state or action), each float32 ``[dim]``."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray
    q99: np.ndarray

    @classmethod
    def from_dict(cls, raw: dict[str, Any], dim: int, name: str) -> "FeatureStats":
        if not isinstance(raw, dict):
            raise StatsError(f"stats[{name!r}] must be a mapping of {list(STAT_KEYS)}")
        missing = [k for k in STAT_KEYS if k not in raw]
        if missing:
            raise StatsError(f"stats[{name!r}] is missing {missing}")
        arrays = {}
        for key in STAT_KEYS:
            try:
                arr = np.asarray(raw[key], dtype=np.float32).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise StatsError(f"stats[{name!r}][{key!r}] is not a list of numbers: {exc}") from exc
            if arr.shape != (dim,):
                raise StatsError(f"stats[{name!r}][{key!r}] has {arr.size} values, the embodiment has {dim}")
            if not np.all(np.isfinite(arr)):
                raise StatsError(f"stats[{name!r}][{key!r}] has non-finite values at {np.flatnonzero(~np.isfinite(arr)).tolist()}")
            arrays[key] = arr
        bad = np.flatnonzero(arrays["q01"] > arrays["q99"])
        if bad.size:
            raise StatsError(f"stats[{name!r}]: q01 > q99 at dimensions {bad.tolist()}")
        return cls(**arrays)

    @classmethod
    def from_range(cls, lower: np.ndarray, upper: np.ndarray) -> "FeatureStats":
        """Statistics whose normalisation maps ``[lower, upper]`` onto [-1, 1] (for untrained bundles)."""
        lower, upper = np.asarray(lower, np.float32), np.asarray(upper, np.float32)
        mid = (lower + upper) / 2
        return cls(min=lower.copy(), max=upper.copy(), mean=mid, std=(upper - lower) / math.sqrt(12),
                   q01=lower.copy(), q99=upper.copy())

    def to_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in STAT_KEYS}

    def normalize(self, x: np.ndarray, modes: np.ndarray | None = None) -> np.ndarray:
        """Joint values -> the model's space. ``modes``: one :data:`NORM_MODES` entry per dimension
        (None: q99 everywhere). A dimension whose range is degenerate maps to 0 (binary: x > 0.5)."""
        x = np.asarray(x, np.float32)
        span = self.q99 - self.q01
        ok = span > _DEGENERATE
        y = np.clip(np.where(ok, 2.0 * (x - self.q01) / np.where(ok, span, 1.0) - 1.0, 0.0), -1.0, 1.0)
        if modes is None or np.all(modes == "q99"):
            return y.astype(np.float32)
        mm_span = self.max - self.min
        mm_ok = mm_span > _DEGENERATE
        mm = np.clip(np.where(mm_ok, 2.0 * (x - self.min) / np.where(mm_ok, mm_span, 1.0) - 1.0, 0.0), -1.0, 1.0)
        std_ok = self.std > _DEGENERATE
        ms = np.where(std_ok, (x - self.mean) / np.where(std_ok, self.std, 1.0), 0.0)
        binary = (x > 0.5).astype(np.float32)
        out = np.select([modes == "min_max", modes == "mean_std", modes == "binary"], [mm, ms, binary], y)
        return out.astype(np.float32)

    def unnormalize(self, y: np.ndarray, modes: np.ndarray | None = None) -> np.ndarray:
        """The model's space -> joint values. q99 and min_max clip to [-1, 1] first, so a chunk never
        leaves the demonstrated range; a degenerate dimension returns its midpoint (mean_std: mean)."""
        y = np.asarray(y, np.float32)
        span = self.q99 - self.q01
        x = (np.clip(y, -1.0, 1.0) + 1.0) / 2.0 * span + self.q01
        x = np.where(span > _DEGENERATE, x, (self.q01 + self.q99) / 2)
        if modes is None or np.all(modes == "q99"):
            return x.astype(np.float32)
        mm_span = self.max - self.min
        mm = np.where(mm_span > _DEGENERATE, (np.clip(y, -1.0, 1.0) + 1.0) / 2.0 * mm_span + self.min,
                      (self.min + self.max) / 2)
        ms = y * self.std + self.mean
        binary = (y > 0.5).astype(np.float32)
        out = np.select([modes == "min_max", modes == "mean_std", modes == "binary"], [mm, ms, binary], x)
        return out.astype(np.float32)


@dataclass
class NormStats:
    """Normalisation statistics of the state and the actions (``stats.json`` of a bundle)."""

    state: FeatureStats
    action: FeatureStats

    @classmethod
    def from_dict(cls, raw: dict[str, Any], dim: int) -> "NormStats":
        """``{"state": {...}, "action": {...}}``; LeRobot's ``observation.state`` key is accepted for state."""
        if not isinstance(raw, dict):
            raise StatsError("stats must be a mapping with 'state' and 'action'")
        state = raw.get("state", raw.get("observation.state"))
        if state is None or "action" not in raw:
            raise StatsError(f"stats need 'state' (or 'observation.state') and 'action'; got keys {sorted(raw)}")
        return cls(state=FeatureStats.from_dict(state, dim, "state"),
                   action=FeatureStats.from_dict(raw["action"], dim, "action"))

    @classmethod
    def from_embodiment(cls, embodiment: Embodiment) -> "NormStats":
        """Joint limits as the range of both state and action: the identity-like stats of an untrained bundle."""
        return cls(state=FeatureStats.from_range(embodiment.lower, embodiment.upper),
                   action=FeatureStats.from_range(embodiment.lower, embodiment.upper))

    def to_dict(self) -> dict[str, Any]:
        return {"normalization": "q01_q99", "state": self.state.to_dict(), "action": self.action.to_dict()}


class Preprocessor:
    """Observations -> model inputs, and normalised padded actions -> joint targets."""

    def __init__(self, config: PolicyConfig, stats: NormStats, tokenizer=None):
        self.config = config
        self.stats = stats
        self.embodiment = load_embodiment(config.embodiment)
        self.modes = norm_modes(config, self.embodiment)
        self.camera = config.cameras[0]
        self.mean = np.asarray(config.image_mean, np.float32)
        self.std = np.asarray(config.image_std, np.float32)
        if config.backbone == "standin":
            self.tokenizer = ByteTokenizer(config.max_text_len)
        else:
            if tokenizer is None:
                if not config.backbone_path:
                    raise ValueError("the Eagle backbone needs its transformers tokenizer (or backbone_path)")
                from transformers import AutoTokenizer
                # Eagle's config.json names remote code (auto_map): never run it, the tokenizer needs none
                tokenizer = AutoTokenizer.from_pretrained(config.backbone_path, trust_remote_code=False)
            from lara_g1.lara.model.eagle import eagle_image_tokens
            from lara_g1.lara.prompt import Gr00tPrompt

            # GR00T's chat-template prompt, left-padded to template + image tokens + max_text_len
            prompt = Gr00tPrompt.with_text_budget(tokenizer, eagle_image_tokens(config.backbone_hf_config),
                                                  config.max_text_len)
            model_id = (config.backbone_hf_config or {}).get("image_token_index")
            if model_id != prompt.image_token_id:
                raise ValueError(f"the tokenizer's <IMG_CONTEXT> is id {prompt.image_token_id} but the backbone's "
                                 f"image_token_index is {model_id}: tokenizer and backbone do not belong together")
            self.tokenizer = prompt

    @property
    def dim(self) -> int:
        return self.embodiment.dim

    def __call__(self, observations: Sequence[Observation]) -> dict[str, np.ndarray]:
        if not observations:
            raise ObservationError("no observations")
        pixels, states, texts = [], [], []
        for i, obs in enumerate(observations):
            pixels.append(self.image(obs.images, i))
            states.append(self._check_state(obs.state, i))
            texts.append(self.config.default_instruction if obs.instruction is None else str(obs.instruction))
        input_ids, attention_mask = self.tokenizer.encode(texts)
        batch = len(observations)
        return {
            "pixel_values": np.stack(pixels),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "state": self.normalize_state(np.stack(states)),
            "embodiment_id": np.full((batch,), self.embodiment.embodiment_id, dtype=np.int64),
        }

    def image(self, images: dict[str, np.ndarray], index: int = 0) -> np.ndarray:
        """The configured camera's frame as float32 ``[3, S, S]``, resized and normalised."""
        if self.camera not in images:
            raise ObservationError(f"observation {index}: no image from camera {self.camera!r} "
                                   f"(got {sorted(images)})")
        img = np.asarray(images[self.camera])
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
            raise ObservationError(f"observation {index}: camera {self.camera!r} must be uint8 [H, W, 3] RGB, "
                                   f"got {img.dtype} {list(img.shape)}")
        x = resize_bilinear(center_crop(img, self.config.image_crop_scale), self.config.image_size) / 255.0
        return ((x - self.mean) / self.std).transpose(2, 0, 1).astype(np.float32)

    def _check_state(self, state: np.ndarray, index: int) -> np.ndarray:
        s = np.asarray(state, dtype=np.float32)
        if s.shape != (self.dim,):
            raise ObservationError(f"observation {index}: state must have shape ({self.dim},), got {list(s.shape)}")
        if not np.all(np.isfinite(s)):
            raise ObservationError(f"observation {index}: state has non-finite values at "
                                   f"{np.flatnonzero(~np.isfinite(s)).tolist()}")
        return s

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        """``[..., 28]`` joint state -> normalised ``[..., max_state_dim]`` zero-padded float32."""
        return self._pad(self.stats.state.normalize(np.asarray(state, np.float32), self.modes),
                         self.config.max_state_dim)

    def normalize_actions(self, actions: np.ndarray) -> np.ndarray:
        """``[..., 28]`` joint targets -> normalised ``[..., max_action_dim]`` zero-padded float32 (training)."""
        return self._pad(self.stats.action.normalize(np.asarray(actions, np.float32), self.modes),
                         self.config.max_action_dim)

    def postprocess(self, actions: np.ndarray) -> np.ndarray:
        """Model output ``[..., max_action_dim]`` -> joint targets ``[..., 28]`` float32 in embodiment units."""
        actions = np.asarray(actions, np.float32)
        if actions.shape[-1] != self.config.max_action_dim:
            raise ValueError(f"actions must end in {self.config.max_action_dim} dims, got {list(actions.shape)}")
        return self.stats.action.unnormalize(actions[..., : self.dim], self.modes)

    def _pad(self, x: np.ndarray, width: int) -> np.ndarray:
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} dims in the last axis, got {list(x.shape)}")
        out = np.zeros(x.shape[:-1] + (width,), dtype=np.float32)
        out[..., : self.dim] = x
        return out
