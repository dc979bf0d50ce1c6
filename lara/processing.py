"""Pre- and post-processing shared by every engine (torch, ort, trt). numpy only.

Normalisation, per joint group (``PolicyConfig.normalization``; GR00T's modes): ``q99`` (the
default) maps the dataset's [q01, q99] range to [-1, 1] and clips there (quantiles rather
than min/max, so a few outlier frames do not squash the useful range); ``min_max`` does the
same with [min, max]; ``mean_std`` standardises; ``binary`` maps x > 0.5 to 1, else 0.
Un-normalising clips the model output to [-1, 1] first (q99, min_max), so a chunk never
leaves the demonstrated range. Dimensions whose range is below 1e-6 (never moved in the
data) normalise to 0 and un-normalise to their midpoint (mean_std: the mean); GR00T passes
such a dimension's raw value through instead (docs/IMPORT.md).

GR00T N1.6 (docs/POLICY.md, "GR00T N1.6's state and action encodings"): a ``sin_cos`` group's
state is ``[sin(x), cos(x)]`` of the raw values (twice as wide); a relative action group
(``relative_action_groups``) predicts ``a[t + k] - s[t]``, normalised with step k's min/max
(``NormStats.relative``), and ``postprocess`` adds the last measured state back;
``action_steps`` serves the first steps of the chunk only.

Images: centre crop (``image_crop_scale``, GR00T: 0.95), bilinear resize (half-pixel centres) to
``image_size``, scale to [0, 1], then ``(x - image_mean) / image_std``; layout ``[B, 3, S, S]``.
GR00T N1.6 (``image_pipeline: gr00t_n16``): its own chain at a fixed camera size, ``[B, 3, H, W]``
with H and W multiples of 28 (:func:`gr00t_n16_image`, :func:`n16_pixel_shape`).

Text: the stand-in backbone uses :class:`ByteTokenizer` (UTF-8 bytes, deterministic, no
vocabulary file); the Eagle backbones use GR00T's chat-template prompts
(:class:`lara_g1.lara.prompt.Gr00tPrompt`, N1.6: :class:`~lara_g1.lara.prompt.Gr00tN16Prompt`) with the
checkpoint's transformers tokenizer, left-padded to template + image tokens + ``max_text_len``. Both pad to a fixed length so every engine sees one shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.core.errors import ConfigError, LaraError
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


def _smallest_max_size_hw(h: int, w: int, edge: int) -> tuple[int, int]:
    # albumentations' SmallestMaxSize: Python round() (half to even) on both sides
    scale = edge / min(h, w)
    return (h, w) if scale == 1.0 else (round(h * scale), round(w * scale))


def _fractional_crop_hw(h: int, w: int, fraction: float) -> tuple[int, int]:
    return int(h * fraction), int(w * fraction)


def _smart_resize_hw(h: int, w: int, factor: int = 28) -> tuple[int, int]:
    # Qwen-VL's smart_resize without its pixel-count limits (never reached at GR00T N1.6's sizes)
    return max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)


def _n16_shapes(camera_hw: Sequence[int], shortest_edge: int, crop: float) -> list[tuple[int, int]]:
    h, w = (int(v) for v in camera_hw)
    first = _smallest_max_size_hw(h, w, shortest_edge)
    cropped = _fractional_crop_hw(*first, crop)
    if min(cropped) < 1:
        raise ValueError(f"a {h} x {w} frame has nothing left after the {crop} centre crop")
    second = _smallest_max_size_hw(*cropped, shortest_edge)
    return [first, cropped, second, _smart_resize_hw(*second)]


def n16_pixel_shape(camera_size: Sequence[int], shortest_edge: int, crop: float) -> tuple[int, int]:
    """``(H, W)`` of the pixels GR00T N1.6's image chain (:func:`gr00t_n16_image`) makes of a
    ``camera_size = [height, width]`` frame: both multiples of 28 (GR00T N1.6: 480 x 640 -> 252 x 336)."""
    return _n16_shapes(camera_size, shortest_edge, crop)[-1]


def _cv2():
    from lara_g1.core.extras import require

    return require("cv2", "train", "GR00T N1.6's image pipeline (cv2 INTER_AREA resize; opencv-python-headless)")


def gr00t_n16_resized(image: np.ndarray, shortest_edge: int, crop: float) -> tuple[np.ndarray, np.ndarray]:
    """GR00T N1.6's eval transform of a uint8 ``[H, W, 3]`` frame, as in its release (no letterbox):
    ``(transformed, resized)``, both uint8 ``[h, w, 3]``.

    ``transformed``: SmallestMaxSize(``shortest_edge``) (cv2 INTER_AREA, Python ``round()`` on both
    sides) -> FractionalCenterCrop(``crop``: int(h * f) x int(w * f) at ((h - ch) // 2, (w - cw) // 2))
    -> SmallestMaxSize(``shortest_edge``) again; ``resized``: Eagle's smart_resize to multiples of 28
    (round(side / 28) * 28, at least 28) with PIL's ``Image.resize`` BICUBIC."""
    cv2 = _cv2()
    from PIL import Image

    first, cropped, second, final = _n16_shapes(image.shape[:2], shortest_edge, crop)
    x = image
    if first != x.shape[:2]:
        x = cv2.resize(x, (first[1], first[0]), interpolation=cv2.INTER_AREA)
    h, w = x.shape[:2]
    top, left = (h - cropped[0]) // 2, (w - cropped[1]) // 2
    x = np.ascontiguousarray(x[top: top + cropped[0], left: left + cropped[1]])
    if second != x.shape[:2]:
        x = cv2.resize(x, (second[1], second[0]), interpolation=cv2.INTER_AREA)
    resized = x
    if final != x.shape[:2]:
        resized = np.asarray(Image.fromarray(x).resize((final[1], final[0]), Image.BICUBIC))
    return x, resized


def gr00t_n16_image(image: np.ndarray, shortest_edge: int, crop: float, mean: np.ndarray | None = None,
                    std: np.ndarray | None = None) -> np.ndarray:
    """GR00T N1.6's pixels of a uint8 ``[H, W, 3]`` frame: float32 ``[3, h, w]``,
    ``(resized / 255 - mean) / std`` (GR00T: mean = std = 0.5) of :func:`gr00t_n16_resized`."""
    _, resized = gr00t_n16_resized(image, shortest_edge, crop)
    mean = np.full(3, 0.5, np.float32) if mean is None else np.asarray(mean, np.float32)
    std = np.full(3, 0.5, np.float32) if std is None else np.asarray(std, np.float32)
    x = resized.astype(np.float32) / np.float32(255.0)
    return ((x - mean) / std).transpose(2, 0, 1).astype(np.float32)


def pixel_shape(config: PolicyConfig) -> tuple[int, int]:
    """``(H, W)`` of the backbone's ``pixel_values`` under ``config`` (fixed: the exported graphs'
    pixel shape)."""
    if config.image_pipeline == "gr00t_n16":
        return n16_pixel_shape(config.camera_size, config.shortest_image_edge, config.image_crop_scale)
    return config.image_size, config.image_size


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
    def from_dict(cls, raw: dict[str, Any], dim: int, name: str, steps: int | None = None) -> "FeatureStats":
        """``steps`` None: each statistic is ``[dim]``; else ``[steps, dim]`` (per-step relative stats)."""
        if not isinstance(raw, dict):
            raise StatsError(f"stats[{name!r}] must be a mapping of {list(STAT_KEYS)}")
        missing = [k for k in STAT_KEYS if k not in raw]
        if missing:
            raise StatsError(f"stats[{name!r}] is missing {missing}")
        arrays = {}
        for key in STAT_KEYS:
            try:
                arr = np.asarray(raw[key], dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise StatsError(f"stats[{name!r}][{key!r}] is not a list of numbers: {exc}") from exc
            if steps is not None:
                if arr.shape != (steps, dim):
                    raise StatsError(f"stats[{name!r}][{key!r}] has shape {list(arr.shape)}, expected "
                                     f"[{steps}, {dim}] (steps, joints)")
            elif (arr := arr.reshape(-1)).shape != (dim,):
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
    """Normalisation statistics of the state and the actions (``stats.json`` of a bundle).

    ``relative`` (GR00T N1.6's relative actions, ``PolicyConfig.relative_action_groups``): per
    joint group, the statistics of ``a[t + k] - s[t]`` per chunk step k, each ``[steps, group
    width]``; stats.json holds them under ``"relative"`` only when there are any (GR00T's
    ``statistics.json`` name, ``"relative_action"``, is read too)."""

    state: FeatureStats
    action: FeatureStats
    relative: dict[str, FeatureStats] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], dim: int) -> "NormStats":
        """``{"state": {...}, "action": {...}, "relative": {group: {...}}}`` (relative optional);
        LeRobot's ``observation.state`` key is accepted for state."""
        if not isinstance(raw, dict):
            raise StatsError("stats must be a mapping with 'state' and 'action'")
        state = raw.get("state", raw.get("observation.state"))
        if state is None or "action" not in raw:
            raise StatsError(f"stats need 'state' (or 'observation.state') and 'action'; got keys {sorted(raw)}")
        relative = raw.get("relative", raw.get("relative_action")) or {}
        if not isinstance(relative, dict):
            raise StatsError("stats['relative'] must map joint groups to per-step statistics")
        return cls(state=FeatureStats.from_dict(state, dim, "state"),
                   action=FeatureStats.from_dict(raw["action"], dim, "action"),
                   relative={group: _relative_stats(group_raw, group) for group, group_raw in relative.items()})

    @classmethod
    def from_embodiment(cls, embodiment: Embodiment, relative_groups: Sequence[str] = (),
                        steps: int = 0) -> "NormStats":
        """Joint limits as the range of both state and action: the identity-like stats of an untrained
        bundle. Each of ``relative_groups`` gets the widest delta the limits allow, ``upper - lower``
        either way, for each of ``steps`` chunk steps."""
        relative = {}
        for name in relative_groups:
            g = embodiment.group(name)
            span = np.tile(embodiment.upper[g.slice] - embodiment.lower[g.slice], (steps, 1))
            relative[name] = FeatureStats.from_range(-span, span)
        return cls(state=FeatureStats.from_range(embodiment.lower, embodiment.upper),
                   action=FeatureStats.from_range(embodiment.lower, embodiment.upper), relative=relative)

    def to_dict(self) -> dict[str, Any]:
        out = {"normalization": "q01_q99", "state": self.state.to_dict(), "action": self.action.to_dict()}
        if self.relative:
            out["relative"] = {name: st.to_dict() for name, st in self.relative.items()}
        return out


def _relative_stats(raw: Any, group: str) -> FeatureStats:
    """One group's per-step statistics, ``[steps, width]`` each (the shape read from its ``min``)."""
    name = f"relative/{group}"
    try:
        shape = np.shape(raw.get("min")) if isinstance(raw, dict) else ()
    except ValueError:   # a ragged list
        shape = ()
    if len(shape) != 2 or 0 in shape:
        raise StatsError(f"stats[{name!r}]['min'] must be a [steps, joints] array, got shape {list(shape)}")
    return FeatureStats.from_dict(raw, shape[1], name, steps=shape[0])


class Preprocessor:
    """Observations -> model inputs, and normalised padded actions -> joint targets."""

    def __init__(self, config: PolicyConfig, stats: NormStats, tokenizer=None):
        self.config = config
        self.stats = stats
        self.embodiment = load_embodiment(config.embodiment)
        self.modes = norm_modes(config, self.embodiment)
        self._gr00t_n16_encodings(config, stats)
        self.camera = config.cameras[0]
        self.mean = np.asarray(config.image_mean, np.float32)
        self.std = np.asarray(config.image_std, np.float32)
        if config.backbone == "standin":
            self.tokenizer = ByteTokenizer(config.max_text_len)
        elif config.backbone == "eagle3":
            if tokenizer is None:
                if not config.backbone_path:
                    raise ValueError("the Eagle 3 backbone needs its transformers tokenizer (or backbone_path)")
                from transformers import AutoTokenizer
                # Eagle's config.json names remote code (auto_map): never run it, the tokenizer needs none
                tokenizer = AutoTokenizer.from_pretrained(config.backbone_path, trust_remote_code=False)
            from lara_g1.lara.model.eagle3 import eagle3_image_tokens
            from lara_g1.lara.prompt import Gr00tN16Prompt

            # GR00T N1.6's prompt (instruction before the frame), left-padded to template + image tokens
            # + max_text_len; the image tokens follow from the fixed pixel shape
            tokens = eagle3_image_tokens(config.backbone_hf_config, pixel_shape(config))
            prompt = Gr00tN16Prompt.with_text_budget(tokenizer, tokens, config.max_text_len)
            model_id = (config.backbone_hf_config or {}).get("image_token_index")
            if model_id != prompt.image_token_id:
                raise ValueError(f"the tokenizer's <IMG_CONTEXT> is id {prompt.image_token_id} but the backbone's "
                                 f"image_token_index is {model_id}: tokenizer and backbone do not belong together")
            self.tokenizer = prompt
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
        """The configured camera's frame as float32 ``[3, S, S]``, resized and normalised
        (``image_pipeline: gr00t_n16``: ``[3, H, W]`` = :func:`pixel_shape`, from a frame of ``camera_size``)."""
        if self.camera not in images:
            raise ObservationError(f"observation {index}: no image from camera {self.camera!r} "
                                   f"(got {sorted(images)})")
        img = np.asarray(images[self.camera])
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
            raise ObservationError(f"observation {index}: camera {self.camera!r} must be uint8 [H, W, 3] RGB, "
                                   f"got {img.dtype} {list(img.shape)}")
        if self.config.image_pipeline == "gr00t_n16":
            if list(img.shape[:2]) != list(self.config.camera_size):
                raise ObservationError(f"observation {index}: camera {self.camera!r} frame is {img.shape[0]} x "
                                       f"{img.shape[1]} but the policy takes camera_size {self.config.camera_size[0]} "
                                       f"x {self.config.camera_size[1]} (GR00T N1.6's pixels, and so the exported "
                                       f"graphs' shape, follow from it): set camera_size or resize the frame")
            return gr00t_n16_image(img, self.config.shortest_image_edge, self.config.image_crop_scale,
                                   self.mean, self.std)
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
        """``[..., 28]`` joint state -> normalised ``[..., max_state_dim]`` zero-padded float32.

        A ``sin_cos`` group contributes ``[sin(x), cos(x)]`` of its raw values (twice its width, not
        normalised, GR00T N1.6); the groups follow each other in the embodiment's order, so the
        encoded width is :attr:`state_width`."""
        state = np.asarray(state, np.float32)
        normalized = self.stats.state.normalize(state, self.modes)
        if not self.sin_cos_groups:
            return self._pad(normalized, self.config.max_state_dim)
        if state.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} dims in the last axis, got {list(state.shape)}")
        parts = []
        for g in self.embodiment.groups:
            if g.name in self.sin_cos_groups:
                parts += [np.sin(state[..., g.slice]), np.cos(state[..., g.slice])]
            else:
                parts.append(normalized[..., g.slice])
        encoded = np.concatenate(parts, axis=-1)
        out = np.zeros(state.shape[:-1] + (self.config.max_state_dim,), dtype=np.float32)
        out[..., : self.state_width] = encoded
        return out

    def normalize_actions(self, actions: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """``[..., 28]`` joint targets -> normalised ``[..., max_action_dim]`` zero-padded float32 (training).

        ``state``: the raw state the chunk starts from, ``actions.shape[:-2] + (28,)``; needed (and
        used) only when the config has relative action groups: their targets are
        ``actions[..., k, :] - state`` normalised with step k's min/max (``stats.relative``)."""
        actions = np.asarray(actions, np.float32)
        y = self.stats.action.normalize(actions, self.action_modes)
        if self.relative_groups:
            state = self._chunk_state(actions, state, "normalize_actions")
            for name, g in self.relative_groups.items():
                delta = actions[..., g.slice] - state[..., None, g.slice]
                y[..., g.slice] = self._relative_stats(name, delta.shape[-2]).normalize(delta, self._relative_modes[name])
        return self._pad(y, self.config.max_action_dim)

    def postprocess(self, actions: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """Model output ``[..., H, max_action_dim]`` -> joint targets ``[..., S, 28]`` float32 in embodiment
        units, S = ``action_steps`` (the served steps, the first of the chunk; None: all H).

        ``state``: the last measured raw state, ``actions.shape[:-2] + (28,)`` (serving: the
        observation's state); needed (and used) only when the config has relative action groups,
        which un-normalise per step (clipping first) and add that group's state back."""
        actions = np.asarray(actions, np.float32)
        if actions.shape[-1] != self.config.max_action_dim:
            raise ValueError(f"actions must end in {self.config.max_action_dim} dims, got {list(actions.shape)}")
        if self.config.action_steps is not None:
            if actions.ndim < 2:
                raise ValueError(f"action_steps {self.config.action_steps} needs the chunk's step axis: actions "
                                 f"[..., steps, {self.config.max_action_dim}], got {list(actions.shape)}")
            actions = actions[..., : self.config.action_steps, :]
        x = self.stats.action.unnormalize(actions[..., : self.dim], self.action_modes)
        if self.relative_groups:
            state = self._chunk_state(actions, state, "postprocess")
            for name, g in self.relative_groups.items():
                delta = self._relative_stats(name, actions.shape[-2]).unnormalize(actions[..., g.slice],
                                                                                  self._relative_modes[name])
                x[..., g.slice] = delta + state[..., None, g.slice]
        return x

    @property
    def state_width(self) -> int:
        """The encoded state's width before padding: the joints, plus once more each ``sin_cos`` group."""
        return self.dim + sum(g.size for g in self.embodiment.groups if g.name in self.sin_cos_groups)

    def raw_states(self, observations: Sequence[Observation]) -> np.ndarray:
        """The observations' raw states, checked, float32 ``[B, 28]`` (what :meth:`postprocess` takes)."""
        return np.stack([self._check_state(obs.state, i) for i, obs in enumerate(observations)])

    def _gr00t_n16_encodings(self, config: PolicyConfig, stats: NormStats) -> None:
        """GR00T N1.6's sin/cos state groups and relative action groups, checked against the stats.

        A ``sin_cos`` group's actions normalise with min_max (N1.6's mode for an action key it
        does not name, ``use_percentiles`` off); relative groups always use their per-step
        min/max, whatever their mode (the mode then applies to their state only)."""
        self.sin_cos_groups = tuple(g.name for g in self.embodiment.groups
                                    if config.normalization.get(g.name) == "sin_cos")
        self.action_modes = np.where(self.modes == "sin_cos", "min_max", self.modes).astype(object)
        if self.state_width > config.max_state_dim:
            raise ConfigError(f"the encoded state is {self.state_width} wide ({self.dim} joints + sin/cos of "
                              f"{list(self.sin_cos_groups)}) but max_state_dim is {config.max_state_dim}")
        groups = {g.name: g for g in self.embodiment.groups}
        unknown = sorted(set(config.relative_action_groups) - set(groups))
        if unknown:
            raise ConfigError(f"relative_action_groups names joint groups {unknown} that embodiment "
                              f"{self.embodiment.name!r} does not have; its groups: {sorted(groups)}")
        steps = config.action_steps or config.horizon
        self.relative_groups = {}
        self._relative_modes = {}
        for name in config.relative_action_groups:
            g = groups[name]
            st = stats.relative.get(name)
            if st is None:
                raise StatsError(f"group {name!r} is a relative action group but the stats have no per-step "
                                 f"relative statistics for it (stats['relative']: {sorted(stats.relative)})")
            if st.min.shape[1] != g.size or st.min.shape[0] < steps:
                raise StatsError(f"stats['relative'][{name!r}] is {list(st.min.shape)}; group {name!r} needs "
                                 f"[>= {steps}, {g.size}] (steps served, joints)")
            self.relative_groups[name] = g
            self._relative_modes[name] = np.full(g.size, "min_max", dtype=object)

    def _relative_stats(self, name: str, steps: int) -> FeatureStats:
        st = self.stats.relative[name]
        if steps > st.min.shape[0]:
            raise StatsError(f"a chunk of {steps} steps, but the relative statistics of {name!r} cover "
                             f"{st.min.shape[0]}")
        return FeatureStats(**{k: getattr(st, k)[:steps] for k in STAT_KEYS})

    def _chunk_state(self, actions: np.ndarray, state: np.ndarray | None, caller: str) -> np.ndarray:
        """The raw state a chunk is relative to, checked: ``actions.shape[:-2] + (28,)``."""
        if state is None:
            raise ValueError(f"{caller}: relative action groups {list(self.relative_groups)} need the raw "
                             f"state (the last measured state the chunk is relative to)")
        state = np.asarray(state, np.float32)
        expected = actions.shape[:-2] + (self.dim,)
        if actions.ndim < 2 or state.shape != expected:
            raise ValueError(f"{caller}: state must have shape {list(expected)} for actions "
                             f"{list(actions.shape)} ([..., steps, dims]), got {list(state.shape)}")
        return state

    def _pad(self, x: np.ndarray, width: int) -> np.ndarray:
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} dims in the last axis, got {list(x.shape)}")
        out = np.zeros(x.shape[:-1] + (width,), dtype=np.float32)
        out[..., : self.dim] = x
        return out
