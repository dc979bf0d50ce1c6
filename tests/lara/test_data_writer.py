"""LeRobotWriter: what it writes is LeRobot v3.0, read back with pyarrow and PyAV only."""
from __future__ import annotations

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.data.lerobot import LeRobotDataset
from lara_g1.lara.data.validate import validate_dataset
from lara_g1.lara.data.video import available_encoder
from lara_g1.lara.data.writer import DatasetWriterError, LeRobotWriter
from tests.helpers.data import (
    DIM,
    FPS,
    LENGTHS,
    SIZE,
    TASKS,
    action_of,
    image_of,
    state_of,
    write_episode,
    write_known_dataset,
)

KEY = "observation.images.head"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_known_dataset(tmp_path_factory.mktemp("ds") / "known")


def decode_all(path):
    """(frames, times) of a video file, with PyAV alone."""
    with av.open(str(path)) as c:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]
    return np.stack([f for _, f in frames]), np.array([t for t, _ in frames])


def test_files_read_back_with_pyarrow_and_pyav_only(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert info["total_episodes"] == len(LENGTHS) and info["total_frames"] == sum(LENGTHS)
    names = list(load_embodiment("g1").joint_names)
    for key in ("observation.state", "action"):
        assert info["features"][key] == {"dtype": "float32", "shape": [DIM], "names": names}
    video = info["features"][KEY]
    assert video["dtype"] == "video" and video["shape"] == [SIZE[0], SIZE[1], 3]
    assert video["info"]["video.pix_fmt"] == "yuv420p"

    tasks = pq.read_table(dataset / "meta/tasks.parquet").to_pylist()
    assert sorted((t["task_index"], t["task"]) for t in tasks) == [(0, TASKS[0]), (1, TASKS[1])]
    task_index = {t["task"]: t["task_index"] for t in tasks}

    episodes = pq.read_table(dataset / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in episodes] == [0, 1, 2]
    start = 0
    for e, row in enumerate(episodes):
        length = LENGTHS[e]
        assert row["length"] == length and row["tasks"] == [TASKS[e]]
        assert (row["dataset_from_index"], row["dataset_to_index"]) == (start, start + length)
        start += length

        data = pq.read_table(dataset / info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])).to_pydict()
        assert data["frame_index"] == list(range(length))
        assert data["episode_index"] == [e] * length
        assert data["index"] == list(range(row["dataset_from_index"], row["dataset_to_index"]))
        assert data["task_index"] == [task_index[TASKS[e]]] * length
        np.testing.assert_array_equal(np.array(data["observation.state"], np.float32),
                                      [state_of(e, t) for t in range(length)])
        np.testing.assert_array_equal(np.array(data["action"], np.float32),
                                      [action_of(e, t) for t in range(length)])
        ts = np.array(data["timestamp"], np.float64)
        np.testing.assert_allclose(ts, np.arange(length) / FPS, atol=1e-6)

        video = dataset / info["video_path"].format(
            video_key=KEY, chunk_index=row[f"videos/{KEY}/chunk_index"],
            file_index=row[f"videos/{KEY}/file_index"])
        frames, times = decode_all(video)
        lo, hi = row[f"videos/{KEY}/from_timestamp"], row[f"videos/{KEY}/to_timestamp"]
        assert hi - lo == pytest.approx(length / FPS)
        in_span = (times >= lo - 1e-4) & (times < hi - 1e-4)
        frames, times = frames[in_span], times[in_span]
        assert len(frames) == length
        np.testing.assert_allclose(times - lo, np.arange(length) / FPS, atol=1e-4)
        originals = np.stack([image_of(e, t) for t in range(length)]).astype(np.int16)
        err = np.abs(frames.astype(np.int16) - originals).mean(axis=(1, 2, 3))
        assert err.max() < 4.0, err
        # each decoded frame is closest to its own original (no off-by-one in time)
        for t in range(length):
            dists = np.abs(frames[t].astype(np.int16) - originals).mean(axis=(1, 2, 3))
            assert int(np.argmin(dists)) == t

    stats = json.loads((dataset / "meta/stats.json").read_text())
    all_states = np.concatenate([[state_of(e, t) for t in range(n)] for e, n in enumerate(LENGTHS)])
    s = stats["observation.state"]
    np.testing.assert_allclose(s["min"], all_states.min(0), rtol=1e-6)
    np.testing.assert_allclose(s["max"], all_states.max(0), rtol=1e-6)
    np.testing.assert_allclose(s["mean"], all_states.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s["q50"], np.quantile(all_states, 0.5, axis=0), rtol=1e-5)
    assert s["count"] == [sum(LENGTHS)]
    assert set(stats[KEY]) >= {"min", "max", "mean", "std", "count", "q01", "q10", "q50",
                               "q90", "q99"}
    assert np.array(stats[KEY]["mean"]).shape == (3, 1, 1)


def test_reader_returns_what_was_written(dataset):
    ds = LeRobotDataset(dataset)
    assert ds.num_episodes == 3 and ds.num_frames == sum(LENGTHS) and ds.cameras == ["head"]
    assert ds.tasks == [TASKS[0], TASKS[1]]
    for e, length in enumerate(LENGTHS):
        ep = ds.episode(e)
        assert ep.task == TASKS[e]
        np.testing.assert_array_equal(ep.states, [state_of(e, t) for t in range(length)])
        np.testing.assert_array_equal(ep.actions, [action_of(e, t) for t in range(length)])
        np.testing.assert_allclose(ep.timestamps, np.arange(length) / FPS, atol=1e-6)
        frames = ds.frames("head", e)
        assert frames.shape == (length, *SIZE, 3) and frames.dtype == np.uint8
        originals = np.stack([image_of(e, t) for t in range(length)]).astype(np.int16)
        assert np.abs(frames.astype(np.int16) - originals).mean() < 4.0
        picked = ds.frames("observation.images.head", e, [length - 1, 0])
        np.testing.assert_array_equal(picked, frames[[length - 1, 0]])
    np.testing.assert_allclose(ds.stats["action"]["max"], action_of(2, 19), rtol=1e-6)
    assert validate_dataset(dataset) == []


def test_discarded_episode_leaves_no_trace(tmp_path):
    root = tmp_path / "d"
    with LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}) as w:
        write_episode(w, 0, 4, "a")
        w.start_episode("b")
        w.add_frame(state_of(9, 0), action_of(9, 0), {"head": image_of(9, 0)})
        w.discard_episode()
        assert w.start_episode("c") == 1  # the re-recorded episode takes the same index
        for t in range(3):
            w.add_frame(state_of(1, t), action_of(1, t), {"head": image_of(1, t)})
        assert w.save_episode() == 1
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 2 and ds.tasks == ["a", "c"]
    np.testing.assert_array_equal(ds.episode(1).states, [state_of(1, t) for t in range(3)])
    assert validate_dataset(root) == []
    assert not (root / ".partial").exists()
    for path in root.rglob("*"):  # readable by others (mkstemp alone would leave 0600)
        assert path.stat().st_mode & 0o044 == 0o044, path


def test_resume_appends_and_recomputes_stats(tmp_path):
    split = tmp_path / "split"
    with LeRobotWriter(split, fps=FPS, cameras={"head": SIZE}) as w:
        write_episode(w, 0, LENGTHS[0], TASKS[0])
    with LeRobotWriter(split, fps=FPS, cameras={"head": SIZE}, resume=True) as w:
        assert w.num_episodes == 1 and w.tasks == [TASKS[0]]
        write_episode(w, 1, LENGTHS[1], TASKS[1])
        write_episode(w, 2, LENGTHS[2], TASKS[2])
    whole = write_known_dataset(tmp_path / "whole")
    assert validate_dataset(split) == []
    a, b = LeRobotDataset(split), LeRobotDataset(whole)
    assert a.num_episodes == 3 and a.tasks == b.tasks
    for e in range(3):
        np.testing.assert_array_equal(a.episode(e).states, b.episode(e).states)
        assert a.episode(e).task == b.episode(e).task
    for key in ("observation.state", "action", KEY):
        for stat, value in b.stats[key].items():
            np.testing.assert_allclose(a.stats[key][stat], value, rtol=1e-9, err_msg=f"{key} {stat}")


def test_bad_input_is_refused_and_loses_nothing(tmp_path):
    root = tmp_path / "d"
    with LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}) as w:
        with pytest.raises(DatasetWriterError, match="start_episode"):
            w.add_frame(state_of(0, 0), action_of(0, 0), {"head": image_of(0, 0)})
        w.start_episode("t")
        with pytest.raises(ValueError, match="shape"):
            w.add_frame(np.zeros(27), action_of(0, 0), {"head": image_of(0, 0)})
        bad = state_of(0, 0)
        bad[3] = np.nan
        with pytest.raises(ValueError, match="left_elbow"):
            w.add_frame(bad, action_of(0, 0), {"head": image_of(0, 0)})
        with pytest.raises(ValueError, match="uint8"):
            w.add_frame(state_of(0, 0), action_of(0, 0), {"head": image_of(0, 0).astype(float)})
        with pytest.raises(ValueError, match="cameras"):
            w.add_frame(state_of(0, 0), action_of(0, 0), {"wrist": image_of(0, 0)})
        with pytest.raises(ValueError, match="grid"):
            w.add_frame(state_of(0, 0), action_of(0, 0), {"head": image_of(0, 0)}, timestamp=0.01)
        w.add_frame(state_of(0, 0), action_of(0, 0), {"head": image_of(0, 0)}, timestamp=0.0)
        with pytest.raises(DatasetWriterError, match="already"):
            w.start_episode("u")
        assert w.save_episode() == 0
        with pytest.raises(DatasetWriterError, match="another writer"):
            LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}, resume=True)
    with pytest.raises(DatasetWriterError, match="not empty"):
        LeRobotWriter(root, fps=FPS, cameras={"head": SIZE})
    with pytest.raises(DatasetWriterError, match="fps"):
        LeRobotWriter(root, fps=15, cameras={"head": SIZE}, resume=True)
    with pytest.raises(DatasetWriterError, match="features"):
        LeRobotWriter(root, fps=FPS, cameras={"wrist": SIZE}, resume=True)
    with pytest.raises(DatasetWriterError, match="no dataset to resume"):
        LeRobotWriter(tmp_path / "nothing", fps=FPS, resume=True)
    with pytest.raises(ValueError, match="even"):
        LeRobotWriter(tmp_path / "odd", fps=FPS, cameras={"head": (47, 64)})
    assert validate_dataset(root) == []
    assert LeRobotDataset(root).num_episodes == 1


@pytest.mark.parametrize("codec, label", [("mpeg4", "mpeg4"), ("libsvtav1", "av1")])
def test_other_encoders_round_trip(tmp_path, codec, label):
    try:
        available_encoder(codec)
    except RuntimeError:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    root = tmp_path / codec
    with LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}, codec=codec) as w:
        write_episode(w, 0, 6, "a")
    assert validate_dataset(root) == []
    ds = LeRobotDataset(root)
    assert ds.features[KEY]["info"]["video.codec"] == label
    originals = np.stack([image_of(0, t) for t in range(6)]).astype(np.int16)
    assert np.abs(ds.frames("head", 0).astype(np.int16) - originals).mean() < 4.0
