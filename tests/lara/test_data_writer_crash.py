"""Crash durability: a real subprocess is SIGKILLed while recording and while saving."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lara_g1.lara.data.lerobot import LeRobotDataset
from lara_g1.lara.data.validate import validate_dataset
from lara_g1.lara.data.writer import LeRobotWriter
from tests.helpers.data import FPS, LENGTHS, SIZE, TASKS, state_of, write_episode

TESTS = Path(__file__).resolve().parent

RECORD_UNTIL_KILLED = """
import sys, time
from tests.helpers.data import FPS, SIZE, TASKS, action_of, image_of, state_of, write_episode
from lara_g1.lara.data.writer import LeRobotWriter
w = LeRobotWriter(sys.argv[1], fps=FPS, cameras={"head": SIZE})
write_episode(w, 0, 12, TASKS[0])
write_episode(w, 1, 5, TASKS[1])
w.start_episode(TASKS[2])
t = 0
while True:
    w.add_frame(state_of(2, t), action_of(2, t), {"head": image_of(2, t)})
    t += 1
    if t == 10:
        print("recording episode 3", flush=True)
    time.sleep(0.002)
"""

RECORD_FIRST_EPISODE = """
import sys
from tests.helpers.data import FPS, SIZE, action_of, image_of, state_of
from lara_g1.lara.data.writer import LeRobotWriter
w = LeRobotWriter(sys.argv[1], fps=FPS, cameras={"head": SIZE})
w.start_episode("pick up the cup")
t = 0
while True:
    w.add_frame(state_of(0, t), action_of(0, t), {"head": image_of(0, t)})
    t += 1
    if t == 5:
        print("recording episode 1", flush=True)
"""

# Kill the process inside save_episode() of episode 3, just before its k-th durable rename
# (1 video, 2 data, 3 tasks, 4 episode rows = the commit point, 5 stats, 6 info).
KILL_INSIDE_SAVE = """
import os, signal, sys
from tests.helpers.data import FPS, SIZE, write_episode
from lara_g1.lara.data import format as fmt
from lara_g1.lara.data.writer import LeRobotWriter
kill_at = int(sys.argv[2])
w = LeRobotWriter(sys.argv[1], fps=FPS, cameras={"head": SIZE})
write_episode(w, 0, 12, "pick up the cup")
write_episode(w, 1, 5, "pour the water")
real, calls = fmt.durable_replace, []
def dying_replace(src, dst):
    calls.append(dst)
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
fmt.durable_replace = dying_replace
write_episode(w, 2, 20, "a new task")
"""


def run_child(code: str, *args: str, wait_for: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    if wait_for is not None:
        line = proc.stdout.readline()
        assert wait_for in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return proc


def assert_first_two_intact(root: Path) -> LeRobotDataset:
    ds = LeRobotDataset(root)
    for e in range(2):
        ep = ds.episode(e)
        assert ep.task == TASKS[e]
        np.testing.assert_array_equal(ep.states, [state_of(e, t) for t in range(LENGTHS[e])])
        assert ds.frames("head", e).shape == (ep.length, *SIZE, 3)
    return ds


def test_sigkill_while_recording_episode_3_keeps_episodes_1_and_2(tmp_path):
    root = tmp_path / "d"
    proc = run_child(RECORD_UNTIL_KILLED, str(root), wait_for="recording episode 3")
    assert proc.returncode == -signal.SIGKILL
    assert any((root / ".partial").glob("*.mp4")), "the kill should land mid-episode"

    assert validate_dataset(root) == []
    ds = assert_first_two_intact(root)
    assert ds.num_episodes == 2

    with LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}, resume=True) as w:
        assert not list((root / ".partial").glob("*.mp4")), "resume clears the partial episode"
        assert w.num_episodes == 2
        write_episode(w, 2, LENGTHS[2], TASKS[2])
    assert validate_dataset(root) == []
    ds = assert_first_two_intact(root)
    assert ds.num_episodes == 3
    np.testing.assert_array_equal(ds.episode(2).states, [state_of(2, t) for t in range(LENGTHS[2])])


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5, 6])
def test_sigkill_inside_save_is_repaired_by_resume(tmp_path, kill_at):
    root = tmp_path / "d"
    proc = run_child(KILL_INSIDE_SAVE, str(root), str(kill_at))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    problems = validate_dataset(root)
    committed = kill_at > 4  # the episode row is written by the 4th rename
    if kill_at > 1:  # something of episode 3 reached the dataset before the kill: named
        assert problems, "the validator must notice the interrupted save"
    assert_first_two_intact(root)

    with LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}, resume=True) as w:
        assert w.num_episodes == (3 if committed else 2)
    assert validate_dataset(root) == []
    ds = assert_first_two_intact(root)
    assert ds.num_episodes == (3 if committed else 2)
    assert ds.tasks[:2] == list(TASKS[:2])
    if committed:
        assert ds.episode(2).task == "a new task"
        assert ds.stats["observation.state"]["count"][0] == 12 + 5 + 20


def test_sigkill_during_the_first_episode_then_resume(tmp_path):
    root = tmp_path / "d"
    proc = run_child(RECORD_FIRST_EPISODE, str(root), wait_for="recording episode 1")
    assert proc.returncode == -signal.SIGKILL
    assert any("no episodes" in p for p in validate_dataset(root))
    with LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}, resume=True) as w:
        assert w.num_episodes == 0
        write_episode(w, 0, LENGTHS[0], TASKS[0])
    assert validate_dataset(root) == []
    np.testing.assert_array_equal(LeRobotDataset(root).episode(0).states,
                                  [state_of(0, t) for t in range(LENGTHS[0])])
