"""Pre- and post-processing shared by every engine (torch, ort, trt). numpy only.

Normalisation: state and actions map per dimension from the dataset's [q01, q99] range to
[-1, 1] and are clipped there (quantiles rather than min/max, so a few outlier frames do
not squash the useful range). Un-normalising clips the model output to [-1, 1] first, so a
chunk never leaves the demonstrated [q01, q99] range. Dimensions whose range is below
1e-6 (never moved in the data) normalise to 0 and un-normalise to their q01..q99 midpoint.

Images: bilinear resize (half-pixel centres) to ``image_size``, scale to [0, 1], then
``(x - image_mean) / image_std``; layout ``[B, 3, S, S]``.

Text: the stand-in backbone uses :class:`ByteTokenizer` (UTF-8 bytes, deterministic, no
vocabulary file); the Eagle backbone uses the checkpoint's transformers tokenizer, with the
image placeholder tokens first. Both pad to a fixed length so every engine sees one shape.
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


def eagle_image_token_layout(hf_config: dict[str, Any]) -> tuple[int, int]:
    """``(image_token_id, tokens per image)`` of a Llava-style transformers config dict."""
    token_id = hf_config.get("image_token_id", hf_config.get("image_token_index"))
    vision = hf_config.get("vision_config") or {}
    if token_id is None or "image_size" not in vision or "patch_size" not in vision:
        raise ValueError("backbone_hf_config needs image_token_id and vision_config.image_size/patch_size")
    count = (vision["image_size"] // vision["patch_size"]) ** 2
    if hf_config.get("vision_feature_select_strategy", "default") == "default":
        count -= 1  # Llava's "default" strategy drops the first (CLS) position
    return int(token_id), int(count)


class EagleTokenizer:
    """Image placeholder tokens followed by the instruction, padded to a fixed length."""

    def __init__(self, tokenizer, hf_config: dict[str, Any], max_len: int):
        self.tokenizer = tokenizer
        self.image_token_id, self.image_tokens = eagle_image_token_layout(hf_config)
        self.max_len = max_len
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad is None else int(pad)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        total = self.image_tokens + self.max_len
        ids = np.full((len(texts), total), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), total), dtype=np.int64)
        ids[:, : self.image_tokens] = self.image_token_id
        mask[:, : self.image_tokens] = 1
        for i, text in enumerate(texts):
            body = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])[: self.max_len]
            ids[i, self.image_tokens: self.image_tokens + len(body)] = body
            mask[i, self.image_tokens: self.image_tokens + len(body)] = 1
        return ids, mask


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

    def normalize(self, x: np.ndarray) -> np.ndarray:
        span = self.q99 - self.q01
        ok = span > _DEGENERATE
        y = 2.0 * (x - self.q01) / np.where(ok, span, 1.0) - 1.0
        return np.clip(np.where(ok, y, 0.0), -1.0, 1.0).astype(np.float32)

    def unnormalize(self, y: np.ndarray) -> np.ndarray:
        span = self.q99 - self.q01
        x = (np.clip(y, -1.0, 1.0) + 1.0) / 2.0 * span + self.q01
        return np.where(span > _DEGENERATE, x, (self.q01 + self.q99) / 2).astype(np.float32)


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
                tokenizer = AutoTokenizer.from_pretrained(config.backbone_path)
            self.tokenizer = EagleTokenizer(tokenizer, config.backbone_hf_config or {}, config.max_text_len)

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
        x = resize_bilinear(img, self.config.image_size) / 255.0
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
        return self._pad(self.stats.state.normalize(np.asarray(state, np.float32)), self.config.max_state_dim)

    def normalize_actions(self, actions: np.ndarray) -> np.ndarray:
        """``[..., 28]`` joint targets -> normalised ``[..., max_action_dim]`` zero-padded float32 (training)."""
        return self._pad(self.stats.action.normalize(np.asarray(actions, np.float32)), self.config.max_action_dim)

    def postprocess(self, actions: np.ndarray) -> np.ndarray:
        """Model output ``[..., max_action_dim]`` -> joint targets ``[..., 28]`` float32 in embodiment units."""
        actions = np.asarray(actions, np.float32)
        if actions.shape[-1] != self.config.max_action_dim:
            raise ValueError(f"actions must end in {self.config.max_action_dim} dims, got {list(actions.shape)}")
        return self.stats.action.unnormalize(actions[..., : self.dim])

    def _pad(self, x: np.ndarray, width: int) -> np.ndarray:
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} dims in the last axis, got {list(x.shape)}")
        out = np.zeros(x.shape[:-1] + (width,), dtype=np.float32)
        out[..., : self.dim] = x
        return out
