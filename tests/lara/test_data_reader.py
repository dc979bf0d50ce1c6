"""LeRobotDataset: both file layouts (one episode per file, LeRobot's many per file) and clear
errors for malformed datasets."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lara_g1.lara.data import format as fmt
from lara_g1.lara.data.format import DatasetFormatError
from lara_g1.lara.data.lerobot import LeRobotDataset
from lara_g1.lara.data.samples import LaraSampleDataset
from lara_g1.lara.data.validate import validate_dataset
from lara_g1.lara.data.video import VideoEncoder
from tests.helpers.data import FPS, LENGTHS, SIZE, TASKS, action_of, image_of, state_of, write_known_dataset

KEY = "observation.images.head"


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return write_known_dataset(tmp_path_factory.mktemp("reader") / "known")


@pytest.fixture(scope="module")
def packed(known, tmp_path_factory):
    """The known dataset repacked the way LeRobot stores it: every episode in ONE data file
    and ONE video file, located by dataset_from/to_index and from/to_timestamp."""
    root = tmp_path_factory.mktemp("reader") / "packed"
    shutil.copytree(known / "meta", root / "meta")
    info = json.loads((known / fmt.INFO_PATH).read_text())
    rows = pq.read_table(known / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    tables = [pq.read_table(known / info["data_path"].format(
        chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])) for r in rows]
    data = root / info["data_path"].format(chunk_index=0, file_index=0)
    data.parent.mkdir(parents=True)
    pq.write_table(pa.concat_tables(tables), data)
    video = root / info["video_path"].format(video_key=KEY, chunk_index=0, file_index=0)
    video.parent.mkdir(parents=True)
    enc = VideoEncoder(video, SIZE[1], SIZE[0], FPS, gop=4)
    start = 0
    for e, (r, n) in enumerate(zip(rows, LENGTHS)):
        for t in range(n):
            enc.encode(image_of(e, t))
        r.update({"data/file_index": 0, f"videos/{KEY}/file_index": 0,
                  f"videos/{KEY}/from_timestamp": start / FPS,
                  f"videos/{KEY}/to_timestamp": (start + n) / FPS})
        start += n
    enc.close()
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    return root


@pytest.mark.parametrize("layout", ["known", "packed"])
def test_episodes_and_frames_in_both_layouts(layout, request):
    root = request.getfixturevalue(layout)
    ds = LeRobotDataset(root)
    assert ds.num_episodes == len(LENGTHS) and ds.tasks == list(TASKS[:2])
    for e, n in enumerate(LENGTHS):
        ep = ds.episode(e)
        assert ep.task == TASKS[e] and ep.length == n
        np.testing.assert_array_equal(ep.states, [state_of(e, t) for t in range(n)])
        np.testing.assert_array_equal(ep.actions, [action_of(e, t) for t in range(n)])
        frames = ds.frames("head", e)
        assert frames.shape == (n, *SIZE, 3)
        originals = np.stack([image_of(e, t) for t in range(n)]).astype(np.int16)
        err = np.abs(frames.astype(np.int16) - originals).mean(axis=(1, 2, 3))
        assert err.max() < 4.0
        assert all(int(np.argmin(np.abs(frames[t].astype(np.int16) - originals)
                                 .mean(axis=(1, 2, 3)))) == t for t in range(n))
    assert validate_dataset(root) == []


def test_random_access_by_seeking_matches_full_decode(packed):
    whole = LeRobotDataset(packed).frames("head", 2)
    seeking = LeRobotDataset(packed, frame_cache_bytes=0)  # nothing cached: every read seeks
    picks = [19, 0, 7, 7, 13]
    np.testing.assert_array_equal(seeking.frames("head", 2, picks), whole[picks])
    np.testing.assert_array_equal(seeking.frames("head", 1, [4])[0],
                                  LeRobotDataset(packed).frames("head", 1)[4])


def test_sample_dataset_on_lerobot_layout(packed):
    samples = LaraSampleDataset(packed, horizon=4, lam_offset=2)
    item = samples[LENGTHS[0] + LENGTHS[1] - 1]  # last frame of episode 1
    assert (item["episode_index"], item["frame_index"]) == (1, LENGTHS[1] - 1)
    np.testing.assert_array_equal(item["actions"], [action_of(1, LENGTHS[1] - 1)] * 4)
    assert item["action_mask"].tolist() == [True, False, False, False]


def corrupt(known, tmp_path, edit):
    root = tmp_path / "bad"
    shutil.copytree(known, root)
    edit(root)
    return root


def test_malformed_datasets_raise_errors_naming_file_and_problem(known, tmp_path):
    with pytest.raises(DatasetFormatError, match="no such dataset"):
        LeRobotDataset(tmp_path / "absent")

    root = corrupt(known, tmp_path, lambda r: (r / fmt.INFO_PATH).unlink())
    with pytest.raises(DatasetFormatError, match=r"info\.json: missing"):
        LeRobotDataset(root)
    shutil.rmtree(root)

    def old_version(r):
        info = json.loads((r / fmt.INFO_PATH).read_text())
        info["codebase_version"] = "v2.1"
        (r / fmt.INFO_PATH).write_text(json.dumps(info))
    root = corrupt(known, tmp_path, old_version)
    with pytest.raises(DatasetFormatError, match=r"info\.json: codebase_version is 'v2\.1'"):
        LeRobotDataset(root)
    shutil.rmtree(root)

    root = corrupt(known, tmp_path, lambda r: (r / fmt.TASKS_PATH).write_bytes(b"not parquet"))
    with pytest.raises(DatasetFormatError, match=r"tasks\.parquet: not a readable parquet"):
        LeRobotDataset(root)
    shutil.rmtree(root)

    def drop_column(r):
        path = r / "meta/episodes/chunk-000/file-000.parquet"
        pq.write_table(pq.read_table(path).drop_columns(["dataset_to_index"]), path)
    root = corrupt(known, tmp_path, drop_column)
    with pytest.raises(DatasetFormatError, match=r"file-000\.parquet: missing episode columns "
                                                 r"\['dataset_to_index'\]"):
        LeRobotDataset(root)
    shutil.rmtree(root)

    root = corrupt(known, tmp_path, lambda r: (r / "data/chunk-000/file-001.parquet").unlink())
    ds = LeRobotDataset(root)
    ds.episode(0)
    with pytest.raises(DatasetFormatError, match=r"file-001\.parquet: data file missing"):
        ds.episode(1)
    with pytest.raises(IndexError, match="episode 3 out of range"):
        ds.episode(3)
    with pytest.raises(KeyError, match="no camera 'wrist'"):
        ds.frames("wrist", 0)
    with pytest.raises(IndexError, match=r"frames \[-1, 12\] outside episode 0's 12 frames"):
        ds.frames("head", 0, [3, -1, 12])
    shutil.rmtree(root)

    def truncate_video(r):
        path = r / f"videos/{KEY}/chunk-000/file-002.mp4"
        enc = VideoEncoder(path, SIZE[1], SIZE[0], FPS)
        for t in range(LENGTHS[2] - 5):
            enc.encode(image_of(2, t))
        enc.close()
    root = corrupt(known, tmp_path, truncate_video)
    with pytest.raises(DatasetFormatError, match=r"file-002\.mp4: frames \[15, 16, 17, 18, 19\]"):
        LeRobotDataset(root).frames("head", 2)


def test_stats_fall_back_to_the_data_when_the_file_lacks_them(known, tmp_path):
    def strip(r):
        stats = json.loads((r / fmt.STATS_PATH).read_text())
        for key in ("q01", "q10", "q50", "q90", "q99"):  # as written before LeRobot had quantiles
            stats["action"].pop(key)
        (r / fmt.STATS_PATH).write_text(json.dumps(stats))
    root = corrupt(known, tmp_path, strip)
    ds = LeRobotDataset(root)
    actions = np.concatenate([[action_of(e, t) for t in range(n)] for e, n in enumerate(LENGTHS)])
    np.testing.assert_allclose(ds.stats["action"]["q99"], np.quantile(actions, 0.99, axis=0))
    assert ds.stats[KEY]["mean"].shape == (3, 1, 1)  # what the file has is kept
    (root / fmt.STATS_PATH).unlink()
    np.testing.assert_allclose(LeRobotDataset(root).stats["action"]["max"], actions.max(0))


def test_a_frame_missing_from_the_video_is_named_exactly(tmp_path):
    from fractions import Fraction

    import av

    from lara_g1.lara.data.video import read_frames
    path = tmp_path / "gap.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=FPS)
        s.width, s.height, s.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        s.codec_context.gop_size = 4
        for i in [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]:  # frame 5 was dropped
            frame = av.VideoFrame.from_ndarray(image_of(0, i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    with pytest.raises(DatasetFormatError, match=r"frames \[5\] of the span .* \(1 missing\)"):
        read_frames(path, 0.0, 12 / FPS, FPS)
    got = read_frames(path, 0.0, 12 / FPS, FPS, [11, 6, 4])
    want = np.stack([image_of(0, i) for i in (11, 6, 4)]).astype(np.int16)
    assert np.abs(got.astype(np.int16) - want).mean() < 6.0
