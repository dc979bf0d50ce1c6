"""Normalisation statistics of a dataset: min, max, mean, std, count and q01..q99 per feature.

meta/stats.json holds, for each feature, lists the shape of one value (``count`` is ``[n]``).
Vector features (state, action) are computed exactly over every frame of every episode, so a
resumed recording gets the same numbers as one written in a single go. Image features are
per channel in [0, 1] (LeRobot's convention, shape [3, 1, 1]) from 256-bin histograms of a
pixel subsample; histograms add up exactly, so these too are independent of how the
recording was split into sessions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from lara_g1.lara.data.format import QUANTILES, STAT_KEYS, STATS_PATH, DatasetFormatError, read_json

Stats = dict[str, dict[str, np.ndarray]]

#: Image stats look at every IMAGE_STRIDE-th pixel in each direction (per-channel statistics
#: converge long before that; the full 640x480 frame would cost more than encoding it).
IMAGE_STRIDE = 8


def compute_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of ``values`` [N, D] over axis 0 (float64 internally, returned as float64)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"compute_stats needs a non-empty [N, D] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("compute_stats: values contain NaN or Inf")
    qs = np.quantile(x, list(QUANTILES.values()), axis=0)
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
           "count": np.array([x.shape[0]])}
    out.update({name: qs[i] for i, name in enumerate(QUANTILES)})
    return out


def relative_action_stats(episodes: Iterable[tuple[np.ndarray, np.ndarray]], horizon: int,
                          columns: slice) -> dict[str, np.ndarray]:
    """Per-step stats of relative actions (GR00T N1.6's RELATIVE keys): for every frame t of every
    episode ``(states [T, D], actions [T, D])`` and every chunk step k < ``horizon``,
    ``actions[min(t + k, T - 1)] - states[t]`` over ``columns``, the chunk clamped at the episode's
    end as the training sampler does. Each statistic ``[horizon, width]`` (``count``: ``[n]``)."""
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    per_step: list[list[np.ndarray]] = [[] for _ in range(horizon)]
    for states, actions in episodes:
        states = np.asarray(states, np.float64)[:, columns]
        actions = np.asarray(actions, np.float64)[:, columns]
        t = np.arange(len(states))
        for k in range(horizon):
            per_step[k].append(actions[np.minimum(t + k, len(states) - 1)] - states)
    steps = [compute_stats(np.concatenate(chunks)) for chunks in per_step]
    out = {key: np.stack([s[key] for s in steps]) for key in steps[0] if key != "count"}
    out["count"] = steps[0]["count"]
    return out


def image_histogram(frame: np.ndarray) -> np.ndarray:
    """Per-channel 256-bin histogram [3, 256] of every IMAGE_STRIDE-th pixel of a uint8
    HxWx3 frame. Histograms add up exactly across frames and episodes."""
    sub = frame[::IMAGE_STRIDE, ::IMAGE_STRIDE]
    return np.stack([np.bincount(sub[..., c].ravel(), minlength=256) for c in range(3)])


def histogram_stats(hist: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """Per-channel image stats in [0, 1] from a [3, 256] histogram, each shaped [3, 1, 1];
    ``count`` is the number of frames. Quantiles are the lowest value whose cumulative share
    reaches the level."""
    hist = np.asarray(hist, dtype=np.float64)
    if hist.shape != (3, 256) or (hist.sum(1) <= 0).any():
        raise ValueError(f"histogram_stats needs a non-empty [3, 256] histogram, got {hist.shape}")
    values = np.arange(256) / 255.0
    n = hist.sum(1)
    mean = (hist * values).sum(1) / n
    std = np.sqrt(np.maximum((hist * values ** 2).sum(1) / n - mean ** 2, 0.0))
    present = hist > 0
    out = {
        "min": values[present.argmax(1)],
        "max": values[255 - present[:, ::-1].argmax(1)],
        "mean": mean,
        "std": std,
    }
    cdf = np.cumsum(hist, axis=1) / n[:, None]
    for name, q in QUANTILES.items():
        out[name] = values[(cdf >= q - 1e-12).argmax(1)]
    out = {k: v.reshape(3, 1, 1) for k, v in out.items()}
    out["count"] = np.array([int(frames)])
    return out


def to_json(stats: Stats) -> dict:
    return {feat: {k: np.asarray(v).tolist() for k, v in s.items()} for feat, s in stats.items()}


def from_json(raw: dict, source: str = STATS_PATH) -> Stats:
    if not isinstance(raw, dict):
        raise DatasetFormatError(f"{source}: expected an object of features")
    out: Stats = {}
    for feat, s in raw.items():
        if not isinstance(s, dict):
            raise DatasetFormatError(f"{source}: stats of {feat!r} must be an object")
        try:
            out[feat] = {k: np.asarray(v, dtype=np.float64) for k, v in s.items()}
        except (TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{source}: stats of {feat!r} are not numeric: {exc}") from exc
    return out


def load_stats(root: Path) -> Stats:
    path = Path(root) / STATS_PATH
    return from_json(read_json(path), str(path))


def check_stats(stats: Stats, feature: str, shape: tuple[int, ...]) -> list[str]:
    """Problems with ``stats[feature]`` for a feature of value shape ``shape``."""
    if feature not in stats:
        return [f"{STATS_PATH}: no stats for {feature!r}"]
    problems = []
    s = stats[feature]
    for key in STAT_KEYS:
        if key not in s:
            problems.append(f"{STATS_PATH}: {feature!r} lacks {key!r}")
            continue
        expected = (1,) if key == "count" else shape
        if tuple(s[key].shape) != tuple(expected):
            problems.append(f"{STATS_PATH}: {feature!r} {key!r} has shape {list(s[key].shape)}, "
                            f"expected {list(expected)}")
        elif not np.isfinite(s[key]).all():
            problems.append(f"{STATS_PATH}: {feature!r} {key!r} contains NaN or Inf")
    return problems
