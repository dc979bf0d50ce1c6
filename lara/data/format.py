"""The LeRobot v3.0 on-disk format: paths, field names, and durable file writes.

One place for what the reader (:mod:`lara_g1.lara.data.lerobot`), the validator
(:mod:`lara_g1.lara.data.validate`) and the writer (:mod:`lara_g1.lara.data.writer`) must agree on.

Layout of a dataset root::

    meta/info.json                                   schema, fps, totals, path templates
    meta/stats.json                                  per-feature min/max/mean/std/count/q01..q99
    meta/tasks.parquet                               task_index -> task (natural language)
    meta/episodes/chunk-000/file-000.parquet         one row per episode
    data/chunk-CCC/file-FFF.parquet                  one row per frame
    videos/observation.images.<cam>/chunk-CCC/file-FFF.mp4

LeRobot v3 packs many episodes into one file and locates each episode through the episode
rows (``data/chunk_index``, ``data/file_index``, ``dataset_from_index``..``dataset_to_index``,
``videos/<key>/from_timestamp``..``to_timestamp``). Our writer puts every episode in its own
data and video file (file index = episode index), which the templates allow, so that an
episode is complete and durable the moment it is saved; the reader handles both layouts.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lara_g1.core.errors import LaraError

CODEBASE_VERSION = "v3.0"

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_PATH_TEMPLATE = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH_TEMPLATE = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH_TEMPLATE = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
#: Work in progress (the episode being recorded); never part of the dataset, ignored by readers.
PARTIAL_DIR = ".partial"

DEFAULT_CHUNKS_SIZE = 1000  # files per chunk directory
DEFAULT_DATA_FILES_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILES_SIZE_IN_MB = 500

STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."

#: Bookkeeping columns of every frame row (LeRobot's default features).
INDEX_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

#: Timestamps must sit on the frame_index / fps grid within this tolerance (LeRobot's 1e-4 s).
TIMESTAMP_TOLERANCE_S = 1e-4

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILES)


class DatasetFormatError(LaraError, ValueError):
    """A dataset on disk that does not follow the LeRobot v3.0 format. The message names the
    file and the problem."""


def camera_key(camera: str) -> str:
    """``"head"`` -> ``"observation.images.head"`` (a full key is returned unchanged)."""
    return camera if camera.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + camera


def camera_name(key: str) -> str:
    """``"observation.images.head"`` -> ``"head"``."""
    return key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else key


def chunk_file_of(episode_index: int, chunks_size: int) -> tuple[int, int]:
    """(chunk_index, file_index) of the file holding episode ``episode_index`` when every
    episode has its own file."""
    return episode_index // chunks_size, episode_index % chunks_size


def video_feature(height: int, width: int, fps: int, codec: str, gop: int) -> dict:
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height,
            "video.width": width,
            "video.codec": codec,
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "video.g": gop,
            "has_audio": False,
        },
    }


def vector_feature(names: list[str], dtype: str = "float32") -> dict:
    return {"dtype": dtype, "shape": [len(names)], "names": list(names)}


def new_info(fps: int, features: dict, robot_type: str | None,
             chunks_size: int = DEFAULT_CHUNKS_SIZE) -> dict:
    """An info.json body for an empty dataset (features must already include INDEX_FEATURES)."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": DEFAULT_DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": DEFAULT_VIDEO_FILES_SIZE_IN_MB,
        "fps": fps,
        "splits": {"train": "0:0"},
        "data_path": DATA_PATH_TEMPLATE,
        "video_path": VIDEO_PATH_TEMPLATE,
        "features": features,
    }


def video_keys(info: dict) -> list[str]:
    return [k for k, f in info.get("features", {}).items() if f.get("dtype") == "video"]


def episode_columns(video_keys_: list[str]) -> list[str]:
    """The episode-row columns our reader needs (LeRobot's names)."""
    cols = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
            "dataset_from_index", "dataset_to_index"]
    for key in video_keys_:
        cols += [f"videos/{key}/chunk_index", f"videos/{key}/file_index",
                 f"videos/{key}/from_timestamp", f"videos/{key}/to_timestamp"]
    return cols


# ----------------------------------------------------------------------------- durable writes

def fsync_path(path: Path) -> None:
    """fsync a file's data, or a directory's entries (POSIX: what makes a rename or a new entry
    in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path) -> None:
    """``mkdir -p path``, fsyncing the parent of every directory it creates (a new directory
    is only durable once the directory entry naming it is)."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_path(directory.parent)


def durable_replace(src: Path, dst: Path) -> None:
    """fsync ``src``, rename it over ``dst`` atomically, fsync the directory of ``dst``."""
    make_dirs_durable(dst.parent)
    fsync_path(src)
    os.replace(src, dst)
    fsync_path(dst.parent)


def _temp_path(dst: Path) -> Path:
    make_dirs_durable(dst.parent)
    fd, name = tempfile.mkstemp(prefix="." + dst.name + ".", suffix=".tmp", dir=dst.parent)
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; a dataset is meant to be read by others
    os.close(fd)
    return Path(name)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = _temp_path(path)
    try:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        durable_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    tmp = _temp_path(path)
    try:
        pq.write_table(table, tmp, compression="snappy")
        durable_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_temp_file(path: Path) -> bool:
    """A leftover of :func:`write_json_atomic` / :func:`write_parquet_atomic`."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


# ----------------------------------------------------------------------------- tasks table

def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet: ``task`` (the index, as pandas writes it) and ``task_index``.

    LeRobot writes this file from a pandas DataFrame indexed by the task string; the pandas
    schema metadata below lets ``pandas.read_parquet`` restore that index, while pyarrow
    readers simply see two columns.
    """
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def read_tasks(root: Path) -> list[str]:
    """Tasks ordered by task_index. Raises :class:`DatasetFormatError` naming the problem."""
    path = root / TASKS_PATH
    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing (the task table)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DatasetFormatError(f"{path}: not a readable parquet file: {exc}") from exc
    names = set(table.column_names)
    task_col = "task" if "task" in names else ("__index_level_0__" if "__index_level_0__" in names
                                              else None)
    if task_col is None or "task_index" not in names:
        raise DatasetFormatError(f"{path}: needs columns 'task' and 'task_index', "
                                 f"has {sorted(names)}")
    indices = table.column("task_index").to_pylist()
    texts = table.column(task_col).to_pylist()
    if sorted(indices) != list(range(len(indices))):
        raise DatasetFormatError(f"{path}: task_index must be 0..{len(indices) - 1} without gaps, "
                                 f"got {sorted(indices)}")
    by_index = dict(zip(indices, texts))
    return [by_index[i] for i in range(len(indices))]


# ----------------------------------------------------------------------------- episode rows

def read_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON: {exc}") from exc


def read_info(root: Path) -> dict:
    """meta/info.json, checked for the fields every reader relies on."""
    path = root / INFO_PATH
    info = read_json(path)
    if not isinstance(info, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object")
    missing = [k for k in ("codebase_version", "fps", "features", "data_path") if k not in info]
    if missing:
        raise DatasetFormatError(f"{path}: missing fields {missing}")
    if info["codebase_version"] != CODEBASE_VERSION:
        raise DatasetFormatError(f"{path}: codebase_version is {info['codebase_version']!r}; "
                                 f"this reader handles LeRobot {CODEBASE_VERSION} only")
    fps = info["fps"]
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise DatasetFormatError(f"{path}: fps must be a positive number, got {fps!r}")
    if not isinstance(info["features"], dict):
        raise DatasetFormatError(f"{path}: 'features' must be an object")
    for key, feat in info["features"].items():
        if not isinstance(feat, dict) or "dtype" not in feat or "shape" not in feat:
            raise DatasetFormatError(f"{path}: feature {key!r} needs 'dtype' and 'shape'")
    if video_keys(info) and "video_path" not in info:
        raise DatasetFormatError(f"{path}: video features {video_keys(info)} but no video_path")
    return info


def episode_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))


def read_episode_rows(root: Path, info: dict) -> list[dict]:
    """All episode rows (without the ``stats/`` columns), sorted by episode_index."""
    files = episode_files(root)
    if not files:
        raise DatasetFormatError(f"{root / EPISODES_DIR}: no episode files "
                                 f"(expected chunk-000/file-000.parquet)")
    needed = episode_columns(video_keys(info))
    rows: list[dict] = []
    for path in files:
        try:
            schema = pq.read_schema(path)
        except Exception as exc:
            raise DatasetFormatError(f"{path}: not a readable parquet file: {exc}") from exc
        missing = [c for c in needed if c not in schema.names]
        if missing:
            raise DatasetFormatError(f"{path}: missing episode columns {missing}")
        rows.extend(pq.read_table(path, columns=needed).to_pylist())
    for row in rows:
        if isinstance(row["tasks"], str):  # a single task stored as a bare string
            row["tasks"] = [row["tasks"]]
        elif row["tasks"] is None:
            row["tasks"] = []
    rows.sort(key=lambda r: r["episode_index"])
    return rows


def episode_stats_columns(table_schema: pa.Schema) -> list[str]:
    return [n for n in table_schema.names if n.startswith("stats/")]
