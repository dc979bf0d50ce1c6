"""Check a LeRobot v3.0 dataset and name every problem found.

``validate_dataset(root)`` returns a list of problems (empty: valid). It checks that the
files exist and parse, that info.json's features match the data columns and videos, that the
episode rows, data rows and video frames agree on lengths, indices and timestamps, that every
referenced task exists, that the stats have the right shapes and match the data, and that no
value is NaN. ``main(argv)`` is the command-line front end (``lara-teleop validate DIR``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lara_g1.lara.data import format as fmt
from lara_g1.lara.data.format import DatasetFormatError
from lara_g1.lara.data.lerobot import vector_column, video_hw
from lara_g1.lara.data.stats import check_stats, load_stats
from lara_g1.lara.data.video import VideoProbe, probe_video, read_frames

TOL = fmt.TIMESTAMP_TOLERANCE_S
#: Arrow's names for the numeric dtypes info.json declares.
ARROW_NAMES = {"float32": {"float", "float32"}, "float64": {"double", "float64"},
               "int64": {"int64"}, "int32": {"int32"}, "bool": {"bool"}}


def validate_dataset(root: str | Path) -> list[str]:
    """Every problem found in the dataset at ``root`` (an empty list means it is valid)."""
    return _Validator(Path(root)).run()


class _Validator:
    def __init__(self, root: Path):
        self.root = root
        self.problems: list[str] = []
        self.tables: dict[Path, pa.Table | None] = {}
        self.probes: dict[Path, VideoProbe | None] = {}

    def add(self, msg: str) -> None:
        self.problems.append(msg)

    def run(self) -> list[str]:
        if not self.root.is_dir():
            return [f"{self.root}: no such directory"]
        try:
            info = fmt.read_info(self.root)
        except DatasetFormatError as exc:
            return [str(exc)]
        self.info, self.fps = info, float(info["fps"])
        self.check_info()
        try:
            self.tasks = fmt.read_tasks(self.root)
        except DatasetFormatError as exc:
            self.add(str(exc))
            self.tasks = None
        try:
            rows = fmt.read_episode_rows(self.root, info)
        except DatasetFormatError as exc:
            self.add(str(exc))
            rows = []
        self.check_episode_rows(rows)
        data_values: dict[str, list[np.ndarray]] = {fmt.STATE_KEY: [], fmt.ACTION_KEY: []}
        for row in rows:
            self.check_episode_data(row, data_values)
            for key in fmt.video_keys(info):
                self.check_episode_video(row, key)
        self.check_data_files_cover(rows)
        self.check_strays(rows)
        self.check_stats(data_values, sum(int(r["length"]) for r in rows))
        return self.problems

    # ------------------------------------------------------------------ info.json

    def check_info(self) -> None:
        path = self.root / fmt.INFO_PATH
        feats = self.info["features"]
        for key, spec in fmt.INDEX_FEATURES.items():
            if key not in feats:
                self.add(f"{path}: feature {key!r} missing")
            elif feats[key]["dtype"] != spec["dtype"]:
                self.add(f"{path}: feature {key!r} has dtype {feats[key]['dtype']!r}, "
                         f"expected {spec['dtype']!r}")
        for key in (fmt.STATE_KEY, fmt.ACTION_KEY):
            feat = feats.get(key)
            if feat is None:
                self.add(f"{path}: feature {key!r} missing")
                continue
            shape, names = feat["shape"], feat.get("names")
            if feat["dtype"] != "float32" or len(shape) != 1:
                self.add(f"{path}: {key!r} must be float32 of shape [dim], is {feat['dtype']} "
                         f"{shape}")
            elif isinstance(names, list) and len(names) != shape[0]:
                self.add(f"{path}: {key!r} has {len(names)} names for shape {shape}")
        for key in fmt.video_keys(self.info):
            h, w = video_hw(feats[key])
            if sorted(feats[key]["shape"]) != sorted([h, w, 3]):
                self.add(f"{path}: video {key!r} shape {feats[key]['shape']} disagrees with its "
                         f"info ({h}x{w})")
        for field in ("total_episodes", "total_frames", "total_tasks", "chunks_size"):
            if not isinstance(self.info.get(field), int) or self.info[field] < 0:
                self.add(f"{path}: {field!r} must be a non-negative integer, "
                         f"got {self.info.get(field)!r}")
        for field, kwargs in (("data_path", {}), ("video_path", {"video_key": "k"})):
            template = self.info.get(field)
            if template is None:
                continue
            try:
                template.format(chunk_index=0, file_index=0, **kwargs)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                self.add(f"{path}: {field} {template!r} is not a valid template: {exc!r}")

    # ------------------------------------------------------------------ episode rows

    def check_episode_rows(self, rows: list[dict]) -> None:
        where = self.root / fmt.EPISODES_DIR
        indices = [int(r["episode_index"]) for r in rows]
        if indices != list(range(len(rows))):
            self.add(f"{where}: episode_index must run 0..{len(rows) - 1} without gaps or "
                     f"repeats, got {indices[:20]}")
        if len(rows) != self.info.get("total_episodes"):
            self.add(f"{self.root / fmt.INFO_PATH}: total_episodes is "
                     f"{self.info.get('total_episodes')}, {where} has {len(rows)} episodes")
        total = sum(int(r["length"]) for r in rows)
        if total != self.info.get("total_frames"):
            self.add(f"{self.root / fmt.INFO_PATH}: total_frames is "
                     f"{self.info.get('total_frames')}, the episodes add up to {total}")
        if self.tasks is not None and len(self.tasks) != self.info.get("total_tasks"):
            self.add(f"{self.root / fmt.INFO_PATH}: total_tasks is "
                     f"{self.info.get('total_tasks')}, {fmt.TASKS_PATH} has {len(self.tasks)}")
        if self.tasks is not None and len(set(self.tasks)) != len(self.tasks):
            self.add(f"{self.root / fmt.TASKS_PATH}: a task appears twice")
        if not rows:
            self.add(f"{where}: the dataset has no episodes")
        expected_from = 0
        for r in rows:
            e, length = r["episode_index"], int(r["length"])
            lo, hi = int(r["dataset_from_index"]), int(r["dataset_to_index"])
            if length <= 0:
                self.add(f"{where}: episode {e} has length {length}")
            if hi - lo != length:
                self.add(f"{where}: episode {e} spans dataset index {lo}..{hi} "
                         f"({hi - lo} frames) but has length {length}")
            if lo != expected_from:
                self.add(f"{where}: episode {e} starts at dataset index {lo}, the previous "
                         f"episode ends at {expected_from}")
            expected_from = hi
            tasks = r["tasks"]
            if not tasks:
                self.add(f"{where}: episode {e} lists no task")
            if self.tasks is not None:
                for task in tasks:
                    if task not in self.tasks:
                        self.add(f"{where}: episode {e} refers to task {task!r}, which is not "
                                 f"in {fmt.TASKS_PATH}")

    # ------------------------------------------------------------------ frame rows

    def table(self, path: Path) -> pa.Table | None:
        if path not in self.tables:
            table = None
            if not path.is_file():
                self.add(f"{path}: data file missing")
            else:
                try:
                    table = pq.read_table(path)
                except Exception as exc:
                    self.add(f"{path}: not a readable parquet file: {exc}")
                else:
                    self.check_columns(path, table)
            self.tables[path] = table
        return self.tables[path]

    def check_columns(self, path: Path, table: pa.Table) -> None:
        declared = {k for k, f in self.info["features"].items() if f["dtype"] != "video"}
        for col in sorted(declared - set(table.column_names)):
            self.add(f"{path}: column {col!r} declared in info.json is missing")
        for col in sorted(set(table.column_names) - declared):
            self.add(f"{path}: column {col!r} is not declared in info.json features")
        for col in sorted(declared & set(table.column_names)):
            arrow_type = table.schema.field(col).type
            while hasattr(arrow_type, "value_type"):  # list / fixed-size list of values
                arrow_type = arrow_type.value_type
            declared_dtype = self.info["features"][col]["dtype"]
            accepted = ARROW_NAMES.get(declared_dtype)
            if accepted is not None and str(arrow_type) not in accepted:
                self.add(f"{path}: column {col!r} holds {arrow_type}, info.json declares "
                         f"{declared_dtype}")

    def check_episode_data(self, row: dict, values: dict[str, list[np.ndarray]]) -> None:
        e, length = int(row["episode_index"]), int(row["length"])
        path = self.root / self.info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                         file_index=row["data/file_index"])
        table = self.table(path)
        needed = ("episode_index", "frame_index", "index", "timestamp", "task_index")
        if table is None or any(c not in table.column_names for c in needed):
            return
        rows = np.flatnonzero(table.column("episode_index").to_numpy() == e)
        if len(rows) != length:
            self.add(f"{path}: {len(rows)} rows of episode {e}, its length is {length}")
            return
        part = table.take(pa.array(rows))
        frame_index = part.column("frame_index").to_numpy()
        order = np.argsort(frame_index, kind="stable")
        frame_index = frame_index[order]
        if not np.array_equal(frame_index, np.arange(length)):
            self.add(f"{path}: episode {e} frame_index is not 0..{length - 1}")
            return
        index = part.column("index").to_numpy()[order]
        lo = int(row["dataset_from_index"])
        if not np.array_equal(index, lo + frame_index):
            bad = int(np.flatnonzero(index != lo + frame_index)[0])
            self.add(f"{path}: episode {e} frame {bad} has index {int(index[bad])}, "
                     f"expected {lo + bad} (dataset_from_index + frame_index)")
        ts = part.column("timestamp").to_numpy().astype(np.float64)[order]
        off = np.abs(ts - frame_index / self.fps)
        if not np.all(off <= TOL):
            bad = int(np.flatnonzero(~(off <= TOL))[0])
            self.add(f"{path}: episode {e} frame {bad} timestamp {ts[bad]:.6f} s is off the "
                     f"frame_index / fps grid ({bad / self.fps:.6f} s)")
        task_index = part.column("task_index").to_numpy()
        if self.tasks is not None:
            bad = task_index[(task_index < 0) | (task_index >= len(self.tasks))]
            if len(bad):
                self.add(f"{path}: episode {e} refers to task_index {int(bad[0])}, "
                         f"{fmt.TASKS_PATH} has {len(self.tasks)} tasks")
            else:
                named = {self.tasks[int(i)] for i in np.unique(task_index)}
                if not named <= set(row["tasks"]):
                    self.add(f"{path}: episode {e} rows name tasks {sorted(named)}, the episode "
                             f"row lists {row['tasks']}")
        for key in (fmt.STATE_KEY, fmt.ACTION_KEY):
            feat = self.info["features"].get(key)
            if feat is None or key not in part.column_names:
                continue
            try:
                arr = vector_column(part, key, int(feat["shape"][0]), path)
            except DatasetFormatError as exc:
                self.add(str(exc))
                continue
            bad = ~np.isfinite(arr)
            if bad.any():
                f, j = (int(x[0]) for x in np.nonzero(bad))
                self.add(f"{path}: episode {e} {key} has {int(bad.sum())} NaN/Inf values "
                         f"(first at frame {f}, dimension {j})")
            else:
                values[key].append(arr)

    def check_data_files_cover(self, rows: list[dict]) -> None:
        """Rows in the data files that belong to no episode (or a different file)."""
        claimed: dict[Path, set[int]] = {}
        for r in rows:
            path = self.root / self.info["data_path"].format(chunk_index=r["data/chunk_index"],
                                                             file_index=r["data/file_index"])
            claimed.setdefault(path, set()).add(int(r["episode_index"]))
        for path, episodes in claimed.items():
            table = self.tables.get(path)
            if table is None or "episode_index" not in table.column_names:
                continue
            present = set(np.unique(table.column("episode_index").to_numpy()).tolist())
            extra = sorted(present - episodes)
            if extra:
                self.add(f"{path}: holds rows of episodes {extra[:10]} that the episode rows do "
                         f"not place in this file")

    # ------------------------------------------------------------------ videos

    def probe(self, path: Path) -> VideoProbe | None:
        if path not in self.probes:
            try:
                self.probes[path] = probe_video(path)
            except DatasetFormatError as exc:
                self.add(str(exc))
                self.probes[path] = None
        return self.probes[path]

    def check_episode_video(self, row: dict, key: str) -> None:
        e, length = int(row["episode_index"]), int(row["length"])
        path = self.root / self.info["video_path"].format(
            video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
            file_index=row[f"videos/{key}/file_index"])
        lo = float(row[f"videos/{key}/from_timestamp"])
        hi = float(row[f"videos/{key}/to_timestamp"])
        if abs((hi - lo) - length / self.fps) > TOL:
            self.add(f"{self.root / fmt.EPISODES_DIR}: episode {e} {key} spans {lo:.4f}..{hi:.4f}"
                     f" s ({hi - lo:.4f} s), {length} frames at {self.fps:g} fps need "
                     f"{length / self.fps:.4f} s")
        probe = self.probe(path)
        if probe is None:
            return
        h, w = video_hw(self.info["features"][key])
        if (probe.height, probe.width) != (h, w):
            self.add(f"{path}: frames are {probe.height}x{probe.width}, info.json says {h}x{w}")
        times = np.array([t for t in probe.frame_times if lo - TOL <= t < hi - TOL])
        if len(times) != length:
            self.add(f"{path}: {len(times)} video frames in {lo:.4f}..{hi:.4f} s for episode "
                     f"{e}, its length is {length}")
            return
        off = np.abs(times - lo - np.arange(length) / self.fps)
        if not np.all(off <= TOL):
            bad = int(np.flatnonzero(off > TOL)[0])
            self.add(f"{path}: episode {e} video frame {bad} is at {times[bad]:.6f} s, off the "
                     f"{self.fps:g} fps grid")
            return
        try:  # the first and last frames decode (catches damaged streams cheaply)
            read_frames(path, lo, hi, self.fps, [0, length - 1])
        except DatasetFormatError as exc:
            self.add(str(exc))

    # ------------------------------------------------------------------ leftovers, stats

    def check_strays(self, rows: list[dict]) -> None:
        referenced = set(self.tables)
        for r in rows:
            for key in fmt.video_keys(self.info):
                referenced.add(self.root / self.info["video_path"].format(
                    video_key=key, chunk_index=r[f"videos/{key}/chunk_index"],
                    file_index=r[f"videos/{key}/file_index"]))
        for top in ("data", "videos", "meta"):
            for path in sorted((self.root / top).rglob("*")):
                if not path.is_file():
                    continue
                if fmt.is_temp_file(path):
                    self.add(f"{path}: temporary file left by an interrupted write "
                             f"(resume the recording to clean up)")
                elif top != "meta" and path.suffix in (".parquet", ".mp4") \
                        and path not in referenced:
                    self.add(f"{path}: not referenced by any episode (left by an interrupted "
                             f"save? resume the recording to clean up)")

    def check_stats(self, values: dict[str, list[np.ndarray]], total_frames: int) -> None:
        path = self.root / fmt.STATS_PATH
        try:
            stats = load_stats(self.root)
        except DatasetFormatError as exc:
            self.add(str(exc))
            return
        feats = self.info["features"]
        for key in (fmt.STATE_KEY, fmt.ACTION_KEY):
            if key not in feats:
                continue
            problems = check_stats(stats, key, tuple(feats[key]["shape"]))
            self.problems.extend(problems)
            if problems or not values[key]:
                continue
            data = np.concatenate(values[key]).astype(np.float64)
            s = stats[key]
            if int(s["count"][0]) != total_frames:
                self.add(f"{path}: {key!r} count is {int(s['count'][0])}, the dataset has "
                         f"{total_frames} frames")
            for name, actual in (("min", data.min(0)), ("max", data.max(0))):
                if not np.allclose(s[name], actual, rtol=1e-5, atol=1e-6):
                    j = int(np.argmax(np.abs(s[name] - actual)))
                    self.add(f"{path}: {key!r} {name} does not match the data (dimension {j}: "
                             f"{s[name][j]:.6g} vs {actual[j]:.6g}); the stats are stale")
        for key in fmt.video_keys(self.info):
            if key in stats:  # image stats are optional; when present they must be well formed
                self.problems.extend(check_stats(stats, key, (3, 1, 1)))


def main(argv: list[str] | None = None) -> int:
    """``validate DIR``: print every problem; exit status 0 when the dataset is valid."""
    parser = argparse.ArgumentParser(description="Check a LeRobot v3.0 dataset.")
    parser.add_argument("dataset", type=Path, help="dataset root directory")
    args = parser.parse_args(argv)
    problems = validate_dataset(args.dataset)
    if problems:
        print(f"{args.dataset}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    info = fmt.read_info(args.dataset)
    print(f"{args.dataset}: valid LeRobot {fmt.CODEBASE_VERSION} dataset, "
          f"{info['total_episodes']} episodes, {info['total_frames']} frames at {info['fps']} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
