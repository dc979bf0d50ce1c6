"""Every trial of ``lara-robot run``/``eval`` as an episode of a LeRobot v3.0 dataset, for review,
replay and fine-tuning on rollouts.

One episode per trial, from the first command the policy drove to the last (the ready-pose
ramp before it and the fade-out after it are not part of it), on the fps grid of the policy
(``scheduler.policy_hz``):

- ``observation.images.<camera>``: the frames of the camera stream the policy's observations
  come from, at their own size (the newest frame captured by each grid instant);
- ``observation.state``: the measured joints;
- ``action``: the command the safety filter sent (what a policy fine-tuned on these episodes
  must learn: its own commands go through the same filter);
- ``policy.action``: the chunk scheduler's target, the raw policy action before the filter;
- the task is the instruction; ``lara/metadata`` in the episode row holds the trial's stage
  flags and timings, outcome, scene seed (sim), safety interventions and loop numbers.

:class:`TrialRecorder` samples the control loop's tick history and frame stream on its own
thread, and encodes the video there: the control loop only appends to its history. Each trial
is saved (durably, :class:`lara_g1.lara.data.writer.LeRobotWriter`) when it ends, so a run
killed later keeps every trial saved before; the trial in progress at a kill is lost.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lara_g1.core.embodiment import Embodiment
from lara_g1.core.errors import LaraError

if TYPE_CHECKING:  # the writer and the reader need pyarrow and av (the record extra): imported where used
    from lara_g1.lara.data.writer import LeRobotWriter
    from lara_g1.robot.control import ControlLoop

log = logging.getLogger(__name__)

POLICY_ACTION_KEY = "policy.action"
METADATA_COLUMN = "lara/metadata"          # = lara.data.writer.METADATA_COLUMN


class RecordingError(LaraError, RuntimeError):
    """The trial dataset cannot be opened or written."""


def open_trial_dataset(root: Path, camera: str, size_hw: tuple[int, int], fps: int,
                       embodiment: Embodiment) -> LeRobotWriter:
    """A writer for trial episodes at ``root``: a new dataset, or more episodes for the dataset
    already there (it must have been recorded with the same camera, size, fps and joints)."""
    try:
        from lara_g1.lara.data import format as fmt
        from lara_g1.lara.data.writer import DatasetWriterError, LeRobotWriter
    except ImportError as exc:
        raise RecordingError(f"recording trials needs the record extra ({exc.name} is missing): pip install "
                             "'lara-g1[record]', or pass --no-record") from None

    h, w = int(size_hw[0]), int(size_hw[1])
    if h % 2 or w % 2:
        raise RecordingError(f"cannot record the camera's {w}x{h} frames: the video needs an even width "
                             "and height; pass --no-record, or set the camera to an even size")
    resume = (Path(root) / fmt.INFO_PATH).is_file()
    try:
        return LeRobotWriter(root, fps=fps, cameras={camera: (h, w)}, embodiment=embodiment, resume=resume,
                             extra_features={POLICY_ACTION_KEY: list(embodiment.joint_names)})
    except (DatasetWriterError, OSError) as exc:
        raise RecordingError(f"cannot record trials into {root}: {exc} (pass --record DIR for another "
                             "directory, or --no-record)") from None


class TrialRecorder:
    """Records one trial of ``loop`` into ``writer`` on its own thread (see the module docstring).

    ``start()`` before ``loop.run()``; ``finish()`` after it returns; then ``save(metadata)`` or
    ``discard()``. ``t0`` is the clock time of the episode's first frame (None: nothing recorded).
    """

    def __init__(self, writer: LeRobotWriter, loop: ControlLoop, camera: str, task: str,
                 clock: Callable[[], float] = time.monotonic, lag_s: float = 0.05) -> None:
        self.writer, self.loop, self.camera, self.task = writer, loop, camera, task
        self.fps = int(writer.fps)
        self._clock = clock
        self.lag_s = lag_s                   # sample an instant this long after it (its frame has arrived)
        self.t0: float | None = None
        self.frames = 0
        self.dropped = 0                     # grid instants without a fresh camera frame
        self.error: BaseException | None = None
        self._finish = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trial-recorder", daemon=True)

    def start(self) -> TrialRecorder:
        self.writer.start_episode(self.task)
        self._thread.start()
        return self

    def finish(self, timeout_s: float = 30.0) -> None:
        """Wait until every instant up to the end of the policy's run is recorded."""
        self._finish.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.error = self.error or RecordingError(f"the recorder did not catch up within {timeout_s:.0f} s")

    def _first_running(self) -> float | None:
        for tick in self.loop.history.snapshot():
            if tick.running:
                return tick.t
        return None

    def _run(self) -> None:
        period = 1.0 / self.fps
        try:
            while self.t0 is None:            # until the policy drives
                self.t0 = self._first_running()
                if self.t0 is None:
                    if self.loop.ended.is_set() or self._finish.is_set():
                        return
                    time.sleep(0.01)
            measured = None
            while True:
                t_k = self.t0 + self.frames * period
                end = self.loop.run_end
                if end is not None and t_k > end:
                    return
                if self._clock() < t_k + self.lag_s and end is None:
                    if self._finish.is_set() and self.loop.ended.is_set():
                        return
                    time.sleep(min(period, max(0.0, t_k + self.lag_s - self._clock())))
                    continue
                tick = self.loop.history.at(t_k)
                grabber = self.loop.frames
                frame = grabber.at(t_k) if grabber is not None else None
                if tick is None or frame is None or tick.target is None:
                    return
                measured = tick.measured if tick.measured is not None else measured
                if measured is None:
                    measured = tick.command
                if not -period < t_k - float(frame.stamp) <= 1.5 * period:
                    self.dropped += 1             # no fresh frame then (or the recorder fell far behind)
                self.writer.add_frame(measured, tick.command, {self.camera: np.asarray(frame.image)},
                                      timestamp=self.frames / self.fps,
                                      extra={POLICY_ACTION_KEY: tick.target})
                self.frames += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller; control goes on
            self.error = exc
            log.warning("recording the trial failed: %s", exc)

    def safety_events(self) -> list[dict[str, Any]]:
        """The safety filter's interventions in this trial, timed from the episode's first frame."""
        f = self.loop.filter
        if f is None:
            return []
        ref = self.t0 if self.t0 is not None else (self.loop.run_end or 0.0)
        return [{"t_s": round(e.t - ref, 3), "kind": e.kind, "detail": e.detail} for e in f.events]

    def save(self, metadata: dict[str, Any]) -> int | None:
        """Save the episode with ``metadata``; None when it has no frames or its recording failed
        (``error``): it is discarded then."""
        if self.frames == 0 or self.error is not None or not self.writer.recording:
            self.discard()
            return None
        body = {**metadata, "recording": {"fps": self.fps, "frames": self.frames, "dropped_frames": self.dropped},
                "safety_events": self.safety_events()}
        return self.writer.save_episode(body)

    def discard(self) -> None:
        self.writer.discard_episode()


# ---------------------------------------------------------------------------------------------
# Reading trial datasets back (the status page's review, the tests)

def read_trials(root: str | Path) -> list[dict[str, Any]]:
    """Every episode of the dataset at ``root``: index, length (frames), seconds, task and its
    ``lara/metadata`` (``{}`` where none), in episode order."""
    import pyarrow.parquet as pq

    from lara_g1.lara.data import format as fmt

    root = Path(root)
    info = fmt.read_info(root)
    trials: list[dict[str, Any]] = []
    for path in fmt.episode_files(root):
        names = pq.read_schema(path).names
        cols = [c for c in ("episode_index", "length", "tasks", METADATA_COLUMN) if c in names]
        for row in pq.read_table(path, columns=cols).to_pylist():
            raw = row.get(METADATA_COLUMN)
            trials.append({"episode": int(row["episode_index"]), "length": int(row["length"]),
                           "seconds": round(int(row["length"]) / float(info["fps"]), 3),
                           "task": (row.get("tasks") or [""])[0],
                           "metadata": json.loads(raw) if raw else {}})
    return sorted(trials, key=lambda t: t["episode"])


def episode_series(root: str | Path, episode: int, embodiment: Embodiment | None = None) -> dict[str, Any]:
    """One episode's per-frame series for plotting: timestamps, and per joint group the measured
    joints (``observation.state``), the commands (``action``) and the raw policy actions
    (``policy.action``, where recorded), each ``[joint][frame]``; with its videos' spans."""
    from lara_g1.lara.data import format as fmt
    from lara_g1.lara.data.lerobot import LeRobotDataset, vector_column

    ds = LeRobotDataset(root)
    ep = ds.episode(episode)
    info = ds.episodes[episode]
    names = ds.state_names or [f"joint_{i}" for i in range(ds.state_dim)]
    groups: list[tuple[str, int, int, str]]
    if embodiment is not None and list(embodiment.joint_names) == list(names):
        groups = [(g.name, g.start, g.stop, g.unit) for g in embodiment.groups]
    else:
        groups = [("joints", 0, len(names), "")]
    policy = None
    feat = ds.features.get(POLICY_ACTION_KEY)
    if feat is not None:
        table = ds._table(info.data_path)
        part = table.take(np.flatnonzero(table.column("episode_index").to_numpy() == episode))
        order = np.argsort(part.column("frame_index").to_numpy(), kind="stable")
        policy = vector_column(part, POLICY_ACTION_KEY, int(feat["shape"][0]), info.data_path)[order]

    def cols(arr: np.ndarray, s: int, e: int) -> list[list[float]]:
        return np.round(arr[:, s:e].T.astype(np.float64), 4).tolist()

    return {
        "episode": episode, "task": ep.task, "fps": ds.fps, "length": ep.length,
        "t": np.round(ep.timestamps.astype(np.float64), 4).tolist(),
        "cameras": {fmt.camera_name(k): {"from_s": span.from_timestamp, "to_s": span.to_timestamp}
                    for k, span in info.videos.items()},
        "groups": [{"name": name, "unit": unit, "joints": list(names[s:e]),
                    "measured": cols(ep.states, s, e), "command": cols(ep.actions, s, e),
                    "policy": None if policy is None else cols(policy, s, e)}
                   for name, s, e, unit in groups],
    }


def video_path(root: str | Path, episode: int, camera: str) -> tuple[Path, float, float]:
    """(file, from_s, to_s) of ``camera``'s video of ``episode``."""
    from lara_g1.lara.data.lerobot import LeRobotDataset

    ds = LeRobotDataset(root)
    span = ds._info_of(episode).videos[ds._video_key(camera)]
    return span.path, span.from_timestamp, span.to_timestamp
