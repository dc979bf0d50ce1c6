"""End to end: lara-teleop record (synthetic operator, simulated G1) -> valid dataset the training
reads; replay of an episode through the safety filter; the validator command."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from lara_g1.core.config import config_path
from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.data.lerobot import LeRobotDataset
from lara_g1.lara.data.samples import LaraSampleDataset
from lara_g1.lara.data.validate import validate_dataset
from lara_g1.robot.evaluation import load_tasks
from tests.helpers.dds import fresh_domain

pytestmark = pytest.mark.slow


def _teleop(*args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return subprocess.run([sys.executable, "-m", "lara_g1.teleop.cli", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def control_config(tmp_path_factory):
    """The default safety settings with the shortest ramp-in and a short fade (test time)."""
    raw = yaml.safe_load(config_path("control/default.yaml").read_text())
    raw["safety"].update(ramp_in_s=1.0, fade_s=0.3)
    path = tmp_path_factory.mktemp("control") / "fast.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, control_config):
    out = tmp_path_factory.mktemp("teleop") / "pour"
    domain = fresh_domain()
    proc = _teleop("record", "--task", "pour", "--episodes", "3", "--episode-time", "3",
                   "--reset-time", "0.5", "--source", "synthetic", "--robot", "sim",
                   "--domain", str(domain), "--out", str(out), "--control-config", control_config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def test_record_synthetic_sim_gives_a_valid_dataset_training_reads(recorded):
    out, proc = recorded
    assert "recorded 3 episode(s)" in proc.stdout
    assert validate_dataset(out) == []
    ds = LeRobotDataset(out)
    emb = load_embodiment("g1")
    instruction = load_tasks()["pour"].instruction
    assert ds.num_episodes == 3
    for i in range(3):
        ep = ds.episode(i)
        assert ep.task == instruction
        assert 80 <= ep.length <= 90                  # 3 s at 30 fps (a scripted end may come first)
        np.testing.assert_allclose(ep.timestamps, np.arange(ep.length) / 30.0, atol=1e-4)
        assert np.all(np.isfinite(ep.states)) and np.all(np.isfinite(ep.actions))
        assert emb.within_limits(ep.actions, tol=1e-5)
        # The operator moved the arms and hands: the commands are not constant.
        assert ep.actions[:, :14].std(axis=0).max() > 0.01
        assert ep.actions[:, 14:26].std(axis=0).max() > 0.05
    samples = LaraSampleDataset(out, horizon=8, lam_offset=5)
    item = samples[len(samples) // 2]
    assert item["instruction"] == instruction
    assert item["image"].dtype == np.uint8 and item["image"].shape[-1] == 3
    assert tuple(np.shape(item["actions"])) == (8, 28)


def test_replay_plays_an_episode_through_the_safety_filter(recorded, control_config):
    out, _ = recorded
    proc = _teleop("replay", str(out), "--episode", "1", "--robot", "sim",
                   "--domain", str(fresh_domain()), "--control-config", control_config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replayed" in proc.stdout
    bad = _teleop("replay", str(out), "--episode", "7", "--robot", "sim")
    assert bad.returncode == 1 and "episode 7 does not exist" in bad.stderr


def test_validate_command_lists_problems(recorded, tmp_path):
    out, _ = recorded
    ok = _teleop("validate", str(out))
    assert ok.returncode == 0 and "3 episodes" in ok.stdout
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    for mp4 in sorted((broken / "videos").rglob("*.mp4"))[:1]:
        mp4.unlink()
    (broken / "meta" / "info.json").write_text("{")
    bad = _teleop("validate", str(broken))
    assert bad.returncode == 1
    assert bad.stderr.count("  - ") >= 1, bad.stderr


def test_record_refuses_bad_requests_before_starting_anything(recorded, tmp_path):
    proc = _teleop("record", "--task", "pour", "--episodes", "1", "--source", "avp",
                   "--avp-ip", "10.0.0.9", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and "--episode-time" in proc.stderr
    out, _ = recorded
    proc = _teleop("record", "--task", "pour", "--episodes", "1", "--episode-time", "1",
                   "--source", "synthetic", "--robot", "sim", "--out", str(out))
    assert proc.returncode == 1 and "--resume" in proc.stderr


def test_sigint_stops_a_recording_started_with_sigint_ignored(tmp_path, control_config):
    """A background job of a script starts with SIGINT ignored; Ctrl-C (or lara-loop's SIGINT)
    must still stop the recording cleanly (exit 130) and keep every saved episode."""
    out = tmp_path / "demos"
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lara_g1.teleop.cli", "record", "--task", "pick_place", "--episodes", "50",
         "--episode-time", "2", "--reset-time", "0.5", "--source", "synthetic", "--robot", "sim",
         "--domain", str(fresh_domain()), "--out", str(out), "--control-config", control_config],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        for line in proc.stdout:
            if "saved as #0" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:           # failed: take its lara-sim down with it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert LeRobotDataset(out).num_episodes >= 1
    assert validate_dataset(out) == []
