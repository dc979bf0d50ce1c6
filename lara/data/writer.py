"""Crash-durable LeRobot v3.0 recording: every saved episode survives a SIGKILL.

LeRobot's own recorder keeps episodes in open parquet/mp4 files and loses them when the
process dies. Here every episode gets its own data file and video file (the v3 path
templates allow any number of files), written like this on ``save_episode()``:

1. the episode's videos, encoded while recording into ``.partial/``, are finished, fsynced
   and renamed into ``videos/`` (one ``os.replace`` each, then the directory is fsynced);
2. its frame rows are written to a temp file, fsynced and renamed into ``data/``;
3. a new task goes into ``meta/tasks.parquet``, then the episode's row into
   ``meta/episodes/chunk-000/file-000.parquet`` (the commit point), then ``meta/stats.json``
   and ``meta/info.json``; each rewritten whole, atomically (temp, fsync, rename, fsync dir).

A kill before the commit point leaves only files that no episode row references; a kill
after it leaves totals/stats one episode behind. Both are repaired by ``resume=True``, which
deletes the unreferenced files and rewrites info and stats from the episode rows and data.
The episode being recorded lives only in memory and in ``.partial/`` (ignored by readers),
where a lock file also keeps a second writer out of the dataset while one is open.

Beyond state, action and the cameras, a writer may carry ``extra_features`` (float32 vectors per
frame, e.g. ``policy.action``: the raw policy actions of a ``lara-robot`` rollout) and a JSON
metadata object per episode (``save_episode(metadata=...)``, stored in the episode row's
``lara/metadata`` column, so it is committed with the episode).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.core.errors import LaraError
from lara_g1.lara.data import format as fmt
from lara_g1.lara.data.lerobot import LeRobotDataset, vector_column
from lara_g1.lara.data.stats import compute_stats, histogram_stats, image_histogram, to_json
from lara_g1.lara.data.video import CODEC_LABEL, VideoEncoder, available_encoder

DEFAULT_CAMERAS = {"head": (480, 640)}
LOCK_NAME = "writer.lock"
#: Episode-row column holding the JSON metadata given to ``save_episode(metadata=...)``.
METADATA_COLUMN = "lara/metadata"


class DatasetWriterError(LaraError, RuntimeError):
    """The writer cannot do what was asked (wrong order of calls, incompatible dataset)."""


class LeRobotWriter:
    """Append episodes to a LeRobot v3.0 dataset at ``root``.

    ``cameras`` maps camera names to (height, width); each becomes the video feature
    ``observation.images.<name>``. State and action are float32 [dim] named after the
    embodiment's joints. With ``resume=True`` an existing dataset is extended (and repaired
    from an interrupted save); otherwise ``root`` must not exist or be empty.
    """

    def __init__(self, root: str | Path, fps: int = 30,
                 cameras: dict[str, tuple[int, int]] | None = None,
                 embodiment: str | Embodiment = "g1", resume: bool = False,
                 robot_type: str = "unitree_g1", codec: str | None = None, gop: int = 15,
                 crf: int = 23, preset: str = "veryfast",
                 chunks_size: int = fmt.DEFAULT_CHUNKS_SIZE,
                 extra_features: dict[str, list[str]] | None = None):
        self.root = Path(root)
        self.extra_features = {k: list(v) for k, v in (extra_features or {}).items()}
        for key, names in self.extra_features.items():
            if key in (fmt.STATE_KEY, fmt.ACTION_KEY, *fmt.INDEX_FEATURES) or key.startswith(fmt.IMAGE_PREFIX):
                raise ValueError(f"extra feature {key!r} clashes with a standard feature")
            if not names:
                raise ValueError(f"extra feature {key!r} needs at least one name")
        self.embodiment = load_embodiment(embodiment) if isinstance(embodiment, str) else embodiment
        self.cameras = dict(DEFAULT_CAMERAS if cameras is None else cameras)
        if not isinstance(fps, int) or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        for cam, hw in self.cameras.items():
            if len(hw) != 2 or hw[0] <= 0 or hw[1] <= 0 or hw[0] % 2 or hw[1] % 2:
                raise ValueError(f"camera {cam!r}: (height, width) must be positive and even "
                                 f"(yuv420p video), got {hw}")
        self.fps = fps
        self.codec = available_encoder(codec)
        self._video_options = {"codec": self.codec, "gop": gop, "crf": crf, "preset": preset}
        self.dim = self.embodiment.dim
        self.encode_seconds = 0.0
        self.encoded_frames = 0

        self._lock_fd: int | None = None
        self._rows: list[dict] = []
        self._tasks: list[str] = []
        self._states: list[np.ndarray] = []   # per saved episode, for exact stats
        self._actions: list[np.ndarray] = []
        self._extras: dict[str, list[np.ndarray]] = {k: [] for k in self.extra_features}
        self._image_hist: dict[str, np.ndarray] = {}
        self._image_frames: dict[str, int] = {}
        self._episode: _EpisodeBuffer | None = None

        wanted = self._features()
        try:
            if resume:
                self._open_existing(wanted)
            else:
                self._create(wanted, robot_type, chunks_size)
        except BaseException:
            self._unlock()
            raise

    # ------------------------------------------------------------------ set-up

    def _features(self) -> dict:
        names = list(self.embodiment.joint_names)
        features = {fmt.STATE_KEY: fmt.vector_feature(names), fmt.ACTION_KEY: fmt.vector_feature(names)}
        for key, extra_names in self.extra_features.items():
            features[key] = fmt.vector_feature(extra_names)
        for cam, (h, w) in self.cameras.items():
            features[fmt.camera_key(cam)] = fmt.video_feature(
                h, w, self.fps, CODEC_LABEL.get(self.codec, self.codec), self._video_options["gop"])
        features.update(fmt.INDEX_FEATURES)
        return features

    def _lock(self) -> None:
        partial = self.root / fmt.PARTIAL_DIR
        partial.mkdir(parents=True, exist_ok=True)
        fd = os.open(partial / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatasetWriterError(f"{self.root}: another writer is recording into this "
                                     f"dataset") from None
        self._lock_fd = fd
        for leftover in partial.iterdir():  # an episode that was being recorded at a crash
            if leftover.name != LOCK_NAME:
                leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _create(self, features: dict, robot_type: str, chunks_size: int) -> None:
        if self.root.exists() and (not self.root.is_dir() or any(
                p.name != fmt.PARTIAL_DIR for p in self.root.iterdir())):
            raise DatasetWriterError(f"{self.root}: exists and is not empty; pass resume=True "
                                     f"to add episodes to it, or choose a new directory")
        fmt.make_dirs_durable(self.root)
        self._lock()
        self.info = fmt.new_info(self.fps, features, robot_type, chunks_size)
        fmt.write_json_atomic(self.root / fmt.INFO_PATH, self.info)

    def _open_existing(self, wanted: dict) -> None:
        if not (self.root / fmt.INFO_PATH).is_file():
            raise DatasetWriterError(f"{self.root}: no dataset to resume ({fmt.INFO_PATH} "
                                     f"missing); drop resume to start a new one")
        self._lock()
        info = fmt.read_info(self.root)
        if info["fps"] != self.fps:
            raise DatasetWriterError(f"{self.root}: recorded at {info['fps']} fps, "
                                     f"this writer is set to {self.fps}")
        have = {k: v for k, v in info["features"].items() if k not in fmt.INDEX_FEATURES}
        want = {k: v for k, v in wanted.items() if k not in fmt.INDEX_FEATURES}
        if sorted(have) != sorted(want):
            raise DatasetWriterError(f"{self.root}: has features {sorted(have)}, this writer "
                                     f"writes {sorted(want)}")
        for key, feat in want.items():
            old = have[key]
            if list(old["shape"]) != list(feat["shape"]) or (
                    feat["dtype"] != "video" and old.get("names") != feat["names"]):
                raise DatasetWriterError(f"{self.root}: feature {key!r} is {old['dtype']} "
                                         f"{old['shape']} named {old.get('names')}, this writer "
                                         f"writes {feat['dtype']} {feat['shape']} named "
                                         f"{feat.get('names')}")
        self.info = info
        # tasks.parquet is written before the episode row that first uses a task, so it may
        # hold a task of an episode lost in a crash: harmless, the task is simply reused.
        self._tasks = fmt.read_tasks(self.root) if (self.root / fmt.TASKS_PATH).is_file() else []
        if fmt.episode_files(self.root):
            for path in fmt.episode_files(self.root):
                self._rows.extend(pq.read_table(path).to_pylist())
            self._rows.sort(key=lambda r: r["episode_index"])
            dataset = LeRobotDataset(self.root)
            for i in range(dataset.num_episodes):
                ep = dataset.episode(i)
                self._states.append(ep.states)
                self._actions.append(ep.actions)
                if self.extra_features:
                    part = dataset._table(dataset.episodes[i].data_path)
                    part = part.take(pa.array(np.flatnonzero(part.column("episode_index").to_numpy() == i)))
                    order = np.argsort(part.column("frame_index").to_numpy(), kind="stable")
                    for key, names in self.extra_features.items():
                        self._extras[key].append(
                            vector_column(part, key, len(names), dataset.episodes[i].data_path)[order])
            for row in self._rows:
                for cam in self.cameras:
                    hist = row.get(f"stats/{fmt.camera_key(cam)}/histogram")
                    if hist is not None:
                        self._add_image_hist(cam, np.asarray(hist, np.int64), int(row["length"]))
        self._remove_unreferenced()
        self._write_meta()

    def _remove_unreferenced(self) -> None:
        """Delete files left by an interrupted save: temp files, and data/video files that no
        episode row references."""
        keep = set()
        for row in self._rows:
            keep.add(self.root / self.info["data_path"].format(
                chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]))
            for key in fmt.video_keys(self.info):
                keep.add(self.root / self.info["video_path"].format(
                    video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                    file_index=row[f"videos/{key}/file_index"]))
        for top in ("data", "videos", "meta"):
            for path in sorted((self.root / top).rglob("*")):
                if not path.is_file():
                    continue
                stray = fmt.is_temp_file(path) or (
                    top != "meta" and path.suffix in (".parquet", ".mp4") and path not in keep)
                if stray:
                    path.unlink()

    # ------------------------------------------------------------------ recording

    @property
    def num_episodes(self) -> int:
        """Episodes saved in the dataset."""
        return len(self._rows)

    @property
    def tasks(self) -> list[str]:
        return list(self._tasks)

    @property
    def recording(self) -> bool:
        return self._episode is not None

    @property
    def frames_in_episode(self) -> int:
        return 0 if self._episode is None else len(self._episode.states)

    def start_episode(self, task: str) -> int:
        """Begin episode number ``num_episodes`` for ``task``; returns its index."""
        if self._lock_fd is None:
            raise DatasetWriterError(f"{self.root}: the writer is closed")
        if self._episode is not None:
            raise DatasetWriterError("an episode is already being recorded; save_episode() or "
                                     "discard_episode() first")
        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty instruction string")
        partial = self.root / fmt.PARTIAL_DIR
        encoders = {}
        try:
            for cam, (h, w) in self.cameras.items():
                encoders[cam] = VideoEncoder(partial / f"{fmt.camera_key(cam)}.mp4", w, h,
                                             self.fps, **self._video_options)
        except Exception:
            for enc in encoders.values():
                enc.abort()
            raise
        self._episode = _EpisodeBuffer(task.strip(), encoders, tuple(self.extra_features))
        return self.num_episodes

    def add_frame(self, state: np.ndarray, action: np.ndarray, images: dict[str, np.ndarray],
                  timestamp: float | None = None, extra: dict[str, np.ndarray] | None = None) -> None:
        """Append one frame. ``timestamp`` (optional) must be frame_index / fps: the caller
        resamples onto the fps grid; a value off the grid is refused. ``extra`` holds a value
        of every extra feature (and only those)."""
        ep = self._episode
        if ep is None:
            raise DatasetWriterError("add_frame() before start_episode()")
        frame_index = len(ep.states)
        state = self._vector(state, "state")
        action = self._vector(action, "action")
        extra = dict(extra or {})
        if set(extra) != set(self.extra_features):
            raise ValueError(f"extra must hold exactly the features {sorted(self.extra_features)}, "
                             f"got {sorted(extra)}")
        extra = {k: self._vector(v, k, self.extra_features[k]) for k, v in extra.items()}
        if set(images) != set(self.cameras):
            raise ValueError(f"images must hold exactly the cameras {sorted(self.cameras)}, "
                             f"got {sorted(images)}")
        for cam, img in images.items():
            h, w = self.cameras[cam]
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.shape != (h, w, 3):
                got = (f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray)
                       else type(img).__name__)
                raise ValueError(f"camera {cam!r}: expected uint8 ({h}, {w}, 3), got {got}")
        if timestamp is not None:
            expected = frame_index / self.fps
            if abs(float(timestamp) - expected) > fmt.TIMESTAMP_TOLERANCE_S:
                raise ValueError(f"frame {frame_index}: timestamp {timestamp:.6f} s is not on the "
                                 f"{self.fps} fps grid (expected {expected:.6f} s); resample "
                                 f"onto frame_index / fps before add_frame()")
        for cam, img in images.items():
            enc = ep.encoders[cam]
            enc.encode(img)
            ep.hist[cam] += image_histogram(img)
        ep.states.append(state)
        ep.actions.append(action)
        for key, value in extra.items():
            ep.extras[key].append(value)

    def _vector(self, value, name: str, names: list[str] | None = None) -> np.ndarray:
        names = list(self.embodiment.joint_names) if names is None else names
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape != (len(names),):
            raise ValueError(f"{name} must have shape ({len(names)},), got {arr.shape}")
        bad = np.flatnonzero(~np.isfinite(arr))
        if len(bad):
            names = [names[i] for i in bad[:4]]
            raise ValueError(f"{name} is not finite at {names}")
        return arr

    def discard_episode(self) -> None:
        """Drop the episode being recorded (re-record); nothing of it reaches the dataset."""
        ep = self._episode
        if ep is None:
            return
        self._episode = None
        for enc in ep.encoders.values():
            enc.abort()
            enc.path.unlink(missing_ok=True)

    def save_episode(self, metadata: dict | None = None) -> int:
        """Make the episode being recorded part of the dataset, durably. Returns its index.
        ``metadata`` (JSON-serialisable) goes into the episode row's ``lara/metadata`` column."""
        ep = self._episode
        if ep is None:
            raise DatasetWriterError("save_episode() without start_episode()")
        length = len(ep.states)
        if length == 0:
            raise DatasetWriterError("cannot save an episode without frames; "
                                     "discard_episode() instead")
        index = self.num_episodes
        chunks = self.info["chunks_size"]
        start = int(self._rows[-1]["dataset_to_index"]) if self._rows else 0
        data_chunk, data_file = self._next_file(
            [(r["data/chunk_index"], r["data/file_index"]) for r in self._rows], chunks)
        row: dict = {"episode_index": index, "tasks": [ep.task], "length": length,
                     "data/chunk_index": data_chunk, "data/file_index": data_file,
                     "dataset_from_index": start, "dataset_to_index": start + length}
        if metadata is not None:
            row[METADATA_COLUMN] = json.dumps(metadata, default=_json_default)

        # 1. videos
        self._episode = None
        for cam, enc in ep.encoders.items():
            key = fmt.camera_key(cam)
            enc.close()
            self.encode_seconds += enc.encode_seconds
            self.encoded_frames += enc.frames
            chunk, file = self._next_file(
                [(r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"])
                 for r in self._rows], chunks)
            dst = self.root / self.info["video_path"].format(video_key=key, chunk_index=chunk,
                                                              file_index=file)
            fmt.durable_replace(enc.path, dst)
            row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": 0.0,
                        f"videos/{key}/to_timestamp": length / self.fps})

        # 2. frame rows
        task_new = ep.task not in self._tasks
        task_index = len(self._tasks) if task_new else self._tasks.index(ep.task)
        states, actions = np.stack(ep.states), np.stack(ep.actions)
        extras = {key: np.stack(values) for key, values in ep.extras.items()}
        frames = np.arange(length, dtype=np.int64)
        table = pa.table({
            fmt.STATE_KEY: _fixed_list(states),
            fmt.ACTION_KEY: _fixed_list(actions),
            **{key: _fixed_list(values) for key, values in extras.items()},
            "timestamp": pa.array((frames / self.fps).astype(np.float32)),
            "frame_index": pa.array(frames),
            "episode_index": pa.array(np.full(length, index, np.int64)),
            "index": pa.array(start + frames),
            "task_index": pa.array(np.full(length, task_index, np.int64)),
        })
        fmt.write_parquet_atomic(self.root / self.info["data_path"].format(
            chunk_index=data_chunk, file_index=data_file), table)

        # 3. metadata
        if task_new:
            self._tasks.append(ep.task)
            fmt.write_parquet_atomic(self.root / fmt.TASKS_PATH, fmt.tasks_table(self._tasks))
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        for key, values in ((fmt.STATE_KEY, states), (fmt.ACTION_KEY, actions), *extras.items()):
            for stat, value in compute_stats(values).items():
                row[f"stats/{key}/{stat}"] = value.tolist()
        for cam, hist in ep.hist.items():
            key = fmt.camera_key(cam)
            for stat, value in histogram_stats(hist, length).items():
                row[f"stats/{key}/{stat}"] = value.tolist()
            row[f"stats/{key}/histogram"] = hist.tolist()
        self._rows.append(row)
        self._write_episode_rows()
        self._states.append(states)
        self._actions.append(actions)
        for key, values in extras.items():
            self._extras[key].append(values)
        for cam, hist in ep.hist.items():
            self._add_image_hist(cam, hist, length)
        self._write_meta()
        return index

    @staticmethod
    def _next_file(used: list[tuple[int, int]], chunks_size: int) -> tuple[int, int]:
        if not used:
            return 0, 0
        chunk, file = max((int(c), int(f)) for c, f in used)
        return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)

    def _add_image_hist(self, cam: str, hist: np.ndarray, frames: int) -> None:
        self._image_hist[cam] = self._image_hist.get(cam, 0) + np.asarray(hist, np.int64)
        self._image_frames[cam] = self._image_frames.get(cam, 0) + frames

    def _write_episode_rows(self) -> None:
        path = self.root / fmt.EPISODES_PATH_TEMPLATE.format(chunk_index=0, file_index=0)
        keys = list(dict.fromkeys(k for r in self._rows for k in r))   # rows may differ (metadata)
        fmt.write_parquet_atomic(path, pa.Table.from_pylist([{k: r.get(k) for k in keys}
                                                             for r in self._rows]))
        for other in fmt.episode_files(self.root):  # rows of a resumed multi-file dataset
            if other != path:
                other.unlink()

    def _write_meta(self) -> None:
        """stats.json and info.json from the saved episodes (both derivable, both rewritten)."""
        if self._rows:
            stats = {fmt.STATE_KEY: compute_stats(np.concatenate(self._states)),
                     fmt.ACTION_KEY: compute_stats(np.concatenate(self._actions))}
            for key, values in self._extras.items():
                stats[key] = compute_stats(np.concatenate(values))
            for cam, hist in self._image_hist.items():
                stats[fmt.camera_key(cam)] = histogram_stats(hist, self._image_frames[cam])
            fmt.write_json_atomic(self.root / fmt.STATS_PATH, to_json(stats))
        total = sum(int(r["length"]) for r in self._rows)
        self.info.update(total_episodes=len(self._rows), total_frames=total,
                         total_tasks=len(self._tasks),
                         splits={"train": f"0:{len(self._rows)}"})
        fmt.write_json_atomic(self.root / fmt.INFO_PATH, self.info)

    def close(self) -> None:
        """Discard an unsaved episode and release the dataset. Saved episodes are untouched."""
        self.discard_episode()
        if self._lock_fd is not None:
            shutil.rmtree(self.root / fmt.PARTIAL_DIR, ignore_errors=True)
            self._unlock()

    def __enter__(self) -> "LeRobotWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _EpisodeBuffer:
    def __init__(self, task: str, encoders: dict[str, VideoEncoder], extras: tuple[str, ...] = ()):
        self.task = task
        self.encoders = encoders
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.extras: dict[str, list[np.ndarray]] = {key: [] for key in extras}
        self.hist = {cam: np.zeros((3, 256), np.int64) for cam in encoders}


def _json_default(obj):
    """numpy values in metadata as their Python equivalents; anything else as its text."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """[N, D] float32 -> fixed_size_list<float32>[D] (what LeRobot's Sequence(length=D) is)."""
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
