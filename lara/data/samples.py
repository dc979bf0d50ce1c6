"""Training samples for LARA from a LeRobot v3.0 dataset.

Item ``i`` is frame ``t`` of some episode: the backbone sees frame t, the Latent Action Model
sees frame t and frame t + lam_offset (clamped to the episode's last frame), the action head
learns the chunk of actions t .. t + horizon - 1. Chunks never cross into the next episode:
past the episode's end the last action is repeated and ``action_mask`` is False there.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.lara.data.format import DatasetFormatError
from lara_g1.lara.data.lerobot import DEFAULT_FRAME_CACHE_BYTES, LeRobotDataset
from lara_g1.lara.data.stats import Stats, relative_action_stats


def available_memory_bytes() -> int | None:
    """Physical memory the OS can hand out now (Linux/macOS sysconf), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def auto_frame_cache_bytes(needed: int, largest_episode: int, memory_fraction: float = 0.5) -> int:
    """A frame cache that holds every decoded frame (``needed`` bytes in all) when that fits in
    ``memory_fraction`` of the available memory, else the default LRU size.

    Training samples frames uniformly over all episodes; an LRU cache smaller than the dataset
    then decodes a whole episode for almost every sample (seconds per step). Held whole, each
    episode is decoded once. The reader caches only episodes up to a quarter of its limit, so
    the limit is at least four times the largest episode (the cache never holds more than
    ``needed``)."""
    available = available_memory_bytes()
    if available is not None and needed <= memory_fraction * available:
        return max(needed, 4 * largest_episode, DEFAULT_FRAME_CACHE_BYTES)
    return DEFAULT_FRAME_CACHE_BYTES


class LaraSampleDataset(Dataset):
    """Samples of all episodes, or of ``episodes`` only (e.g. a train/validation split).
    With ``embodiment`` (a name or an Embodiment) the dataset's joint names must match its
    layout. ``frame_cache_bytes`` None sizes the decoded-frame cache to hold all the chosen
    episodes when they fit (:func:`auto_frame_cache_bytes`). Items (numpy arrays; torch's
    default collate turns them into tensors)::

        image          uint8 [H, W, 3]   frame t of ``camera``
        future_image   uint8 [H, W, 3]   frame min(t + lam_offset, T - 1)
        state          float32 [D]       observation.state at t
        actions        float32 [horizon, D]
        action_mask    bool [horizon]    False for steps past the episode's end
        instruction    str               the episode's task
        episode_index  int
        frame_index    int               t
    """

    def __init__(self, root: str | Path, horizon: int, lam_offset: int, camera: str = "head",
                 embodiment: str | Embodiment | None = None, episodes: list[int] | None = None,
                 frame_cache_bytes: int | None = DEFAULT_FRAME_CACHE_BYTES):
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        if not isinstance(lam_offset, int) or lam_offset < 0:
            raise ValueError(f"lam_offset must be a non-negative integer, got {lam_offset!r}")
        self.dataset = LeRobotDataset(root, frame_cache_bytes=frame_cache_bytes or DEFAULT_FRAME_CACHE_BYTES)
        if camera not in self.dataset.cameras:
            raise KeyError(f"{self.dataset.root}: no camera {camera!r}; cameras: "
                           f"{self.dataset.cameras}")
        if embodiment is not None:
            self._check_layout(load_embodiment(embodiment) if isinstance(embodiment, str)
                               else embodiment)
        self.horizon, self.lam_offset, self.camera = horizon, lam_offset, camera
        chosen = list(range(self.dataset.num_episodes)) if episodes is None else \
            [int(e) for e in episodes]
        if not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"episodes must be a non-empty list without repeats, got {episodes}")
        loaded = [self.dataset.episode(i) for i in chosen]  # IndexError names a bad index
        self._episodes = chosen
        self._states = [e.states for e in loaded]
        self._actions = [e.actions for e in loaded]
        self._tasks = [e.task for e in loaded]
        lengths = np.array([e.length for e in loaded], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(lengths)])
        self._lengths = lengths
        if frame_cache_bytes is None:
            self.dataset.frame_cache_bytes = auto_frame_cache_bytes(
                self.dataset.decoded_bytes(camera, chosen),
                max(self.dataset.decoded_bytes(camera, [e]) for e in chosen))

    def _check_layout(self, embodiment: Embodiment) -> None:
        """State and action must be the embodiment's joints, in its order."""
        ds = self.dataset
        for what, dim, names in (("observation.state", ds.state_dim, ds.state_names),
                                 ("action", ds.action_dim, ds.action_names)):
            if dim != embodiment.dim:
                raise DatasetFormatError(f"{ds.root}: {what} has {dim} values, embodiment "
                                         f"{embodiment.name!r} has {embodiment.dim} joints")
            if isinstance(names, list) and names != list(embodiment.joint_names):
                wrong = next(i for i, (a, b) in enumerate(zip(names, embodiment.joint_names))
                             if a != b)
                raise DatasetFormatError(f"{ds.root}: {what} value {wrong} is {names[wrong]!r}, "
                                         f"embodiment {embodiment.name!r} has "
                                         f"{embodiment.joint_names[wrong]!r} there")

    @property
    def stats(self) -> Stats:
        return self.dataset.stats

    def relative_action_stats(self, columns: slice) -> dict[str, np.ndarray]:
        """Per-step statistics ``[horizon, width]`` of the relative targets ``a[t + k] - s[t]`` over
        ``columns`` (a joint group) in these samples' chunks (:func:`lara.data.stats.relative_action_stats`)."""
        return relative_action_stats(zip(self._states, self._actions), self.horizon, columns)

    @property
    def instructions(self) -> list[str]:
        """The dataset's distinct tasks, by task_index."""
        return list(self.dataset.tasks)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, item: int) -> tuple[int, int]:
        """(position in the chosen episodes, frame_index) of item ``item``."""
        if not -len(self) <= item < len(self):
            raise IndexError(f"item {item} out of range for {len(self)} samples")
        item %= len(self)
        pos = int(np.searchsorted(self._starts, item, side="right") - 1)
        return pos, int(item - self._starts[pos])

    def __getitem__(self, item: int) -> dict:
        pos, t = self.locate(int(item))
        episode = self._episodes[pos]
        last = int(self._lengths[pos]) - 1
        future = min(t + self.lam_offset, last)
        frames = self.dataset.frames(self.camera, episode, [t, future])
        steps = t + np.arange(self.horizon)
        return {
            "image": frames[0],
            "future_image": frames[1],
            "state": self._states[pos][t],
            "actions": self._actions[pos][np.minimum(steps, last)],
            "action_mask": steps <= last,
            "instruction": self._tasks[pos],
            "episode_index": episode,
            "frame_index": t,
        }
