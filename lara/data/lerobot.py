"""Read a LeRobot v3.0 dataset from disk: metadata, per-episode states/actions, video frames.

Works on datasets written by LeRobot itself (many episodes per file, located through the
episode rows) and by our recorder (one episode per file). Nothing here downloads anything.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lara_g1.lara.data import format as fmt
from lara_g1.lara.data.format import DatasetFormatError
from lara_g1.lara.data.stats import STAT_KEYS, Stats, load_stats
from lara_g1.lara.data.stats import compute_stats as vector_stats
from lara_g1.lara.data.video import read_frames

#: Decoded frames kept per reader (whole episodes, least recently used dropped first).
DEFAULT_FRAME_CACHE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class VideoSpan:
    path: Path
    from_timestamp: float
    to_timestamp: float


@dataclass(frozen=True)
class EpisodeInfo:
    """One row of meta/episodes: where the episode lives."""

    index: int
    length: int
    tasks: tuple[str, ...]
    data_path: Path
    dataset_from_index: int
    dataset_to_index: int
    videos: dict[str, VideoSpan] = field(default_factory=dict)  # video key -> span


@dataclass(frozen=True)
class Episode:
    """The frame rows of one episode, ordered by frame_index."""

    index: int
    task: str
    states: np.ndarray      # f32 [T, state_dim]
    actions: np.ndarray     # f32 [T, action_dim]
    timestamps: np.ndarray  # f32 [T] (= frame_index / fps)
    frame_index: np.ndarray  # i64 [T]
    task_index: np.ndarray  # i64 [T]

    @property
    def length(self) -> int:
        return len(self.timestamps)


def vector_column(table: pa.Table, name: str, dim: int, source: Path) -> np.ndarray:
    """A list / fixed-size-list column as a float32 [N, dim] array."""
    if name not in table.column_names:
        raise DatasetFormatError(f"{source}: missing column {name!r}")
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        if col.type.list_size != dim:
            raise DatasetFormatError(f"{source}: column {name!r} holds {col.type.list_size} "
                                     f"values per row, info.json says {dim}")
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and not (lengths == dim).all():
            bad = int(np.flatnonzero(lengths != dim)[0])
            raise DatasetFormatError(f"{source}: column {name!r} row {bad} holds "
                                     f"{lengths[bad]} values, info.json says {dim}")
    else:
        raise DatasetFormatError(f"{source}: column {name!r} must be a list column, "
                                 f"is {col.type}")
    if col.null_count:
        raise DatasetFormatError(f"{source}: column {name!r} has {col.null_count} null rows")
    values = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(len(col), dim)


def video_hw(feature: dict) -> tuple[int, int]:
    """(height, width) of a video feature, whichever of LeRobot's shape conventions it uses."""
    info = feature.get("info") or {}
    if "video.height" in info and "video.width" in info:
        return int(info["video.height"]), int(info["video.width"])
    shape = list(feature["shape"])
    names = list(feature.get("names") or [])
    if "height" in names and "width" in names:
        return int(shape[names.index("height")]), int(shape[names.index("width")])
    return (int(shape[1]), int(shape[2])) if shape[0] == 3 else (int(shape[0]), int(shape[1]))


class LeRobotDataset:
    """A LeRobot v3.0 dataset at ``root`` (read-only).

    ``info``, ``tasks`` (list, by task_index), ``episodes`` (list of :class:`EpisodeInfo`),
    ``episode(i)`` -> :class:`Episode`, ``frames(camera, i)`` -> uint8 [T, H, W, 3],
    ``stats`` (meta/stats.json as numpy arrays).
    """

    def __init__(self, root: str | Path, frame_cache_bytes: int = DEFAULT_FRAME_CACHE_BYTES):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetFormatError(f"{self.root}: no such dataset directory")
        self.info = fmt.read_info(self.root)
        self.fps = self.info["fps"]
        self.features: dict = self.info["features"]
        for key in (fmt.STATE_KEY, fmt.ACTION_KEY):
            if key not in self.features:
                raise DatasetFormatError(f"{self.root / fmt.INFO_PATH}: no {key!r} feature")
        self.state_dim = int(self.features[fmt.STATE_KEY]["shape"][0])
        self.action_dim = int(self.features[fmt.ACTION_KEY]["shape"][0])
        self.video_keys = fmt.video_keys(self.info)
        self.tasks = fmt.read_tasks(self.root)
        self.episodes = [self._episode_info(r) for r in fmt.read_episode_rows(self.root, self.info)]
        indices = [e.index for e in self.episodes]
        if indices != list(range(len(indices))):
            raise DatasetFormatError(f"{self.root / fmt.EPISODES_DIR}: episode_index must run "
                                     f"0..{len(indices) - 1} without gaps, got {indices[:10]}...")
        self._tables: dict[Path, pa.Table] = {}
        self._stats: Stats | None = None
        self._frame_cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._frame_cache_bytes = frame_cache_bytes

    # ------------------------------------------------------------------ metadata

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    @property
    def cameras(self) -> list[str]:
        """Camera names (``"head"`` for ``observation.images.head``)."""
        return [fmt.camera_name(k) for k in self.video_keys]

    @property
    def state_names(self) -> list[str] | None:
        return self.features[fmt.STATE_KEY].get("names")

    @property
    def action_names(self) -> list[str] | None:
        return self.features[fmt.ACTION_KEY].get("names")

    @property
    def stats(self) -> Stats:
        """meta/stats.json: {feature: {min, max, mean, std, count, q01, ..., q99}} (numpy).

        Where the file is missing, or lacks state/action entries (datasets written before
        LeRobot added quantiles), those are computed from the data (:meth:`compute_stats`).
        """
        if self._stats is None:
            path = self.root / fmt.STATS_PATH
            stats = load_stats(self.root) if path.is_file() else {}
            keys = (fmt.STATE_KEY, fmt.ACTION_KEY)
            if any(k not in stats or any(s not in stats[k] for s in STAT_KEYS) for k in keys):
                stats.update(self.compute_stats())
            self._stats = stats
        return self._stats

    def compute_stats(self) -> Stats:
        """Exact state and action stats over every frame of every episode."""
        episodes = [self.episode(i) for i in range(self.num_episodes)]
        if not episodes:
            raise DatasetFormatError(f"{self.root}: no episodes to compute stats from")
        return {fmt.STATE_KEY: vector_stats(np.concatenate([e.states for e in episodes])),
                fmt.ACTION_KEY: vector_stats(np.concatenate([e.actions for e in episodes]))}

    def image_size(self, camera: str) -> tuple[int, int]:
        return video_hw(self.features[self._video_key(camera)])

    def decoded_bytes(self, camera: str, episodes: list[int] | None = None) -> int:
        """Bytes of ``camera``'s decoded uint8 frames over ``episodes`` (default: all)."""
        h, w = self.image_size(camera)
        chosen = range(self.num_episodes) if episodes is None else episodes
        return sum(self._info_of(int(i)).length for i in chosen) * h * w * 3

    @property
    def frame_cache_bytes(self) -> int:
        return self._frame_cache_bytes

    @frame_cache_bytes.setter
    def frame_cache_bytes(self, value: int) -> None:
        self._frame_cache_bytes = int(value)
        while self._frame_cache and sum(f.nbytes for f in self._frame_cache.values()) > self._frame_cache_bytes:
            self._frame_cache.popitem(last=False)

    def _episode_info(self, row: dict) -> EpisodeInfo:
        data_path = self.root / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        videos = {}
        for key in self.video_keys:
            path = self.root / self.info["video_path"].format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                file_index=row[f"videos/{key}/file_index"])
            videos[key] = VideoSpan(path, float(row[f"videos/{key}/from_timestamp"]),
                                    float(row[f"videos/{key}/to_timestamp"]))
        return EpisodeInfo(index=int(row["episode_index"]), length=int(row["length"]),
                           tasks=tuple(row["tasks"]), data_path=data_path,
                           dataset_from_index=int(row["dataset_from_index"]),
                           dataset_to_index=int(row["dataset_to_index"]), videos=videos)

    def _video_key(self, camera: str) -> str:
        key = fmt.camera_key(camera)
        if key not in self.video_keys:
            raise KeyError(f"{self.root}: no camera {camera!r}; cameras: {self.cameras}")
        return key

    def _info_of(self, episode: int) -> EpisodeInfo:
        if not 0 <= episode < len(self.episodes):
            raise IndexError(f"{self.root}: episode {episode} out of range "
                             f"(0..{len(self.episodes) - 1})")
        return self.episodes[episode]

    # ------------------------------------------------------------------ frame rows

    def _table(self, path: Path) -> pa.Table:
        if path not in self._tables:
            if not path.is_file():
                raise DatasetFormatError(f"{path}: data file missing")
            try:
                self._tables[path] = pq.read_table(path)
            except Exception as exc:
                raise DatasetFormatError(f"{path}: not a readable parquet file: {exc}") from exc
        return self._tables[path]

    def episode(self, episode: int) -> Episode:
        """States, actions, timestamps and task of episode ``episode``."""
        ep = self._info_of(episode)
        table = self._table(ep.data_path)
        for col in ("episode_index", "frame_index", "timestamp", "task_index"):
            if col not in table.column_names:
                raise DatasetFormatError(f"{ep.data_path}: missing column {col!r}")
        ep_col = table.column("episode_index").to_numpy()
        rows = np.flatnonzero(ep_col == ep.index)
        if len(rows) != ep.length:
            raise DatasetFormatError(f"{ep.data_path}: {len(rows)} rows of episode {ep.index}, "
                                     f"the episode metadata says length {ep.length}")
        part = table.take(pa.array(rows))
        frame_index = part.column("frame_index").to_numpy().astype(np.int64)
        order = np.argsort(frame_index, kind="stable")
        frame_index = frame_index[order]
        if not np.array_equal(frame_index, np.arange(ep.length)):
            raise DatasetFormatError(f"{ep.data_path}: episode {ep.index} frame_index is not "
                                     f"0..{ep.length - 1}")
        task_index = part.column("task_index").to_numpy().astype(np.int64)[order]
        bad = task_index[(task_index < 0) | (task_index >= len(self.tasks))]
        if len(bad):
            raise DatasetFormatError(f"{ep.data_path}: episode {ep.index} refers to task_index "
                                     f"{int(bad[0])}, {self.root / fmt.TASKS_PATH} has "
                                     f"{len(self.tasks)} tasks")
        task = ep.tasks[0] if ep.tasks else self.tasks[int(task_index[0])]
        return Episode(
            index=ep.index,
            task=task,
            states=vector_column(part, fmt.STATE_KEY, self.state_dim, ep.data_path)[order],
            actions=vector_column(part, fmt.ACTION_KEY, self.action_dim, ep.data_path)[order],
            timestamps=part.column("timestamp").to_numpy().astype(np.float32)[order],
            frame_index=frame_index,
            task_index=task_index,
        )

    # ------------------------------------------------------------------ video frames

    def frames(self, camera: str, episode: int, indices: list[int] | None = None) -> np.ndarray:
        """uint8 [T, H, W, 3] RGB frames of ``episode`` (or only frames ``indices``).

        Whole episodes that fit a quarter of the frame cache are decoded once and cached
        (the whole-episode array returned then is the cached one, so it is read-only; pass
        ``indices`` or copy it to get a writable array); frames of bigger episodes are
        decoded by seeking to the keyframe before each.
        """
        key = self._video_key(camera)
        ep = self._info_of(episode)
        if indices is not None:
            indices = [int(i) for i in indices]
            bad = [i for i in indices if not 0 <= i < ep.length]
            if bad:
                raise IndexError(f"{self.root}: frames {bad[:5]} outside episode {ep.index}'s "
                                 f"{ep.length} frames")
        span = ep.videos[key]
        cache_key = (key, ep.index)
        if cache_key in self._frame_cache:
            self._frame_cache.move_to_end(cache_key)
            cached = self._frame_cache[cache_key]
            return cached if indices is None else cached[np.asarray(indices, dtype=np.int64)]
        h, w = video_hw(self.features[key])
        episode_bytes = ep.length * h * w * 3
        if indices is not None and episode_bytes > self._frame_cache_bytes // 4:
            return read_frames(span.path, span.from_timestamp, span.to_timestamp, self.fps,
                               indices)
        frames = read_frames(span.path, span.from_timestamp, span.to_timestamp, self.fps)
        if len(frames) != ep.length:
            raise DatasetFormatError(f"{span.path}: {len(frames)} frames in the span of episode "
                                     f"{ep.index}, its length is {ep.length}")
        if episode_bytes <= self._frame_cache_bytes // 4:
            frames.setflags(write=False)
            self._frame_cache[cache_key] = frames
            while sum(f.nbytes for f in self._frame_cache.values()) > self._frame_cache_bytes:
                self._frame_cache.popitem(last=False)
        return frames if indices is None else frames[np.asarray(indices, dtype=np.int64)]

    def __repr__(self) -> str:
        return (f"LeRobotDataset({str(self.root)!r}, episodes={self.num_episodes}, "
                f"frames={self.num_frames}, fps={self.fps}, cameras={self.cameras})")
