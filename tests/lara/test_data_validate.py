"""validate_dataset names every injected problem (and nothing on a good dataset)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lara_g1.lara.data import format as fmt
from lara_g1.lara.data.validate import main, validate_dataset
from lara_g1.lara.data.video import VideoEncoder
from tests.helpers.data import FPS, LENGTHS, SIZE, image_of, write_known_dataset

KEY = "observation.images.head"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return write_known_dataset(tmp_path_factory.mktemp("validate") / "known")


def edit_json(path, change):
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def edit_table(path, change):
    pq.write_table(change(pq.read_table(path)), path)


def set_column(table, name, values):
    i = table.column_names.index(name)
    return table.set_column(i, name, pa.array(values, table.schema.field(name).type))


def shift_timestamps(t):
    return set_column(t, "timestamp", (pc.add(t.column("timestamp"), 0.004)).to_pylist())


def nan_in_state(t):
    states = np.array(t.column("observation.state").to_pylist(), np.float32)
    states[2, 5] = np.nan
    return t.set_column(t.column_names.index("observation.state"), "observation.state",
                        pa.FixedSizeListArray.from_arrays(pa.array(states.reshape(-1)), 28))


def shorter_video(root):
    path = root / f"videos/{KEY}/chunk-000/file-001.mp4"
    enc = VideoEncoder(path, SIZE[1], SIZE[0], FPS)
    for t in range(LENGTHS[1] - 2):
        enc.encode(image_of(1, t))
    enc.close()


def longer_episode(t):
    rows = t.to_pylist()
    rows[1]["length"] += 1
    rows[1]["dataset_to_index"] += 1
    return pa.Table.from_pylist(rows)


def wrong_stats_shape(s):
    s["action"]["mean"] = s["action"]["mean"][:10]


INJECTED = {
    "video missing": (lambda r: (r / f"videos/{KEY}/chunk-000/file-002.mp4").unlink(),
                      ["file-002.mp4: video file missing"]),
    "data missing": (lambda r: (r / "data/chunk-000/file-000.parquet").unlink(),
                     ["file-000.parquet: data file missing"]),
    "total_frames": (lambda r: edit_json(r / fmt.INFO_PATH, lambda i: i.update(total_frames=99)),
                     ["total_frames is 99, the episodes add up to 37"]),
    "feature undeclared": (lambda r: edit_json(r / fmt.INFO_PATH,
                                               lambda i: i["features"].pop("action")),
                           ["column 'action' is not declared in info.json features",
                            "feature 'action' missing"]),
    "timestamps": (lambda r: edit_table(r / "data/chunk-000/file-001.parquet", shift_timestamps),
                   ["episode 1 frame 0 timestamp 0.004000 s is off the frame_index / fps grid"]),
    "index": (lambda r: edit_table(r / "data/chunk-000/file-002.parquet",
                                   lambda t: set_column(t, "index", list(range(LENGTHS[2])))),
              ["episode 2 frame 0 has index 0, expected 17"]),
    "nan": (lambda r: edit_table(r / "data/chunk-000/file-000.parquet", nan_in_state),
            ["episode 0 observation.state has 1 NaN/Inf values (first at frame 2, dimension 5)"]),
    "task missing": (lambda r: pq.write_table(fmt.tasks_table(["pick up the cup"]),
                                              r / fmt.TASKS_PATH),
                     ["episode 1 refers to task 'pour the water', which is not in",
                      "refers to task_index 1"]),
    "length": (lambda r: edit_table(r / EPISODES, longer_episode),
               ["5 rows of episode 1, its length is 6",
                "6 frames at 30 fps need", "episode 2 starts at dataset index 17, the previous "
                "episode ends at 18"]),
    "video frames": (shorter_video, ["3 video frames in 0.0000..0.1667 s for episode 1, its "
                                     "length is 5"]),
    "stats shape": (lambda r: edit_json(r / fmt.STATS_PATH, wrong_stats_shape),
                    ["'action' 'mean' has shape [10], expected [28]"]),
    "stale stats": (lambda r: edit_json(r / fmt.STATS_PATH,
                                        lambda s: s["observation.state"].update(max=[0.0] * 28)),
                    ["'observation.state' max does not match the data"]),
    "stray file": (lambda r: shutil.copy(r / "data/chunk-000/file-000.parquet",
                                         r / "data/chunk-000/file-007.parquet"),
                   ["file-007.parquet: not referenced by any episode"]),
    "temp file": (lambda r: (r / "meta/.info.json.x1.tmp").write_text("{"),
                  [".info.json.x1.tmp: temporary file left by an interrupted write"]),
    "dtype": (lambda r: edit_table(r / "data/chunk-000/file-001.parquet",
                                   lambda t: t.set_column(t.column_names.index("action"), "action",
                                                          t.column("action").cast(
                                                              pa.list_(pa.float64(), 28)))),
              ["column 'action' holds double, info.json declares float32"]),
    "no info": (lambda r: (r / fmt.INFO_PATH).unlink(), ["info.json: missing"]),
}


@pytest.mark.parametrize("name", list(INJECTED))
def test_validator_names_injected_problem(known, tmp_path, name):
    root = tmp_path / "bad"
    shutil.copytree(known, root)
    inject, expected = INJECTED[name]
    inject(root)
    problems = validate_dataset(root)
    for text in expected:
        assert any(text in p for p in problems), (text, problems)


def test_good_dataset_and_cli(known, capsys):
    assert validate_dataset(known) == []
    assert main([str(known)]) == 0
    assert "valid LeRobot v3.0 dataset, 3 episodes, 37 frames" in capsys.readouterr().out
    assert main([str(known / "nowhere")]) == 1
    assert "no such directory" in capsys.readouterr().err
