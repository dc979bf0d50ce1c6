"""Every trial of lara-robot recorded as a LeRobot v3.0 episode (robot/recording.py), end to end
against the simulated G1 (lara-sim subprocess) and a policy server on the tiny random bundle:

- a 3-trial `lara-robot eval --sim` leaves a dataset `lara-teleop validate` accepts: 3 episodes,
  the commands after the safety filter as `action`, the raw policy actions as `policy.action`,
  the trial's metadata (stages, timings, seed, interventions, outcome); its live status page
  serves the camera, the commanded/measured trace and the last chunk meanwhile;
- `lara-teleop replay` plays a recorded trial back on the sim;
- the review page plays each trial's video beside its joint plots in headless Chromium;
- `lara-train` fine-tunes on the recorded rollouts as they are;
- a run killed (SIGKILL) after its first trial keeps the trials saved before, and a later
  `lara-robot run --record` adds to that dataset.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import yaml

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.data import format as fmt
from lara_g1.lara.data.lerobot import LeRobotDataset
from lara_g1.lara.data.validate import validate_dataset
from lara_g1.robot.dashboard import RobotDashboard
from lara_g1.robot.evaluation import load_tasks
from lara_g1.robot.recording import POLICY_ACTION_KEY, episode_series, read_trials
from lara_g1.robot.sim.process import SimProcess
from tests.helpers.browser import HeadlessChromium
from tests.helpers.control import PATIENT, fast_config
from tests.helpers.dds import fresh_domain
from tests.helpers.serve import free_port

EMB = load_embodiment("g1")
DOMAIN = fresh_domain()
TASK = "pour"
INSTRUCTION = load_tasks()[TASK].instruction
SEED = 7
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


@pytest.fixture(scope="module")
def address(engine):                       # engine: tests/robot/conftest.py (the tiny random bundle)
    from lara_g1.runtime.server import PolicyServer

    srv = PolicyServer(engine, bind="tcp://127.0.0.1:*", seed=0).start()
    yield srv.address
    srv.stop()


@pytest.fixture(scope="module")
def sim():
    with SimProcess(TASK, DOMAIN, render_size=(96, 96), seed=0) as proc:
        yield proc


@pytest.fixture(scope="module")
def control_yaml(tmp_path_factory):
    """The shipped control config with the shortest ramp-in, a patient hold and a short fade."""
    cfg = yaml.safe_load(open(fast_config().source))  # noqa: SIM115
    cfg["safety"].update({"ramp_in_s": 1.0, "fade_s": 0.5, **PATIENT})
    path = tmp_path_factory.mktemp("control") / "control.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def lara_robot(command: str, address: str, control_yaml, *args: str) -> list[str]:
    return [sys.executable, "-m", "lara_g1.robot.cli", command, "--task", TASK, "--sim", "--sim-running",
            "--domain", str(DOMAIN), "--server", address, "--config", str(control_yaml), *args]


@pytest.fixture(scope="module")
def evaluated(address, sim, control_yaml, tmp_path_factory):
    """`lara-robot eval --sim` over 3 trials (default recording), its live status page polled meanwhile."""
    out = tmp_path_factory.mktemp("eval")
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(lara_robot("eval", address, control_yaml, "--trials", "3", "--trial-s", "1.5",
                                       "--seed", str(SEED), "--out", str(out), "--dashboard", f"127.0.0.1:{port}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    live: dict = {}
    url = f"http://127.0.0.1:{port}"
    while proc.poll() is None and time.monotonic() - t0 < 150:
        try:
            trace = httpx.get(url + "/api/trace", timeout=2).json()
            chunk = httpx.get(url + "/api/last_chunk", timeout=2).json()
            status = httpx.get(url + "/api/status", timeout=2).json()
            if trace["groups"] and chunk["horizon"] and "trace" not in live:
                live.update(trace=trace, chunk=chunk, camera=httpx.get(url + "/api/camera", timeout=2))
            if (status.get("recording") or {}).get("frames"):
                live["recording"] = status["recording"]
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    out_text, _ = proc.communicate(timeout=60)
    return {"out": out, "dataset": out / "dataset", "proc": proc, "stdout": out_text, "live": live,
            "seconds": time.monotonic() - t0}


def test_eval_records_each_trial_as_an_episode_that_validates(evaluated):
    proc, root = evaluated["proc"], evaluated["dataset"]
    assert proc.returncode == 0, evaluated["stdout"]
    assert "saved as episode 2 of" in evaluated["stdout"]
    check = subprocess.run([sys.executable, "-m", "lara_g1.teleop.cli", "validate", str(root)],
                           capture_output=True, text=True, timeout=60, env=ENV)
    assert check.returncode == 0, check.stderr
    assert "3 episodes" in check.stdout
    assert validate_dataset(root) == []

    ds = LeRobotDataset(root)
    assert ds.num_episodes == 3 and ds.tasks == [INSTRUCTION]
    feat = ds.features[POLICY_ACTION_KEY]
    assert feat["dtype"] == "float32" and feat["names"] == list(EMB.joint_names)
    assert ds.cameras == ["head"] and ds.image_size("head") == (96, 96)       # the frames the policy got
    assert POLICY_ACTION_KEY in json.loads((root / fmt.STATS_PATH).read_text())
    summary = json.loads((evaluated["out"] / "metrics.json").read_text())
    assert [t["episode_index"] for t in summary["per_trial"]] == [0, 1, 2]
    assert summary["info"]["dataset"] == str(root)

    trials = read_trials(root)
    for i, trial in enumerate(trials):
        m = trial["metadata"]
        assert m["command"] == "eval" and m["trial"] == i and m["scene_seed"] == SEED + i
        assert m["task"] == TASK and m["instruction"] == INSTRUCTION and m["sim"] is True
        assert set(m["stages"]) == {"Grasp-Left", "Grasp-Right", "Full"}
        assert m["outcome"] == ("success" if m["stages"]["Full"] else "failure") and m["counted"] is True
        assert m["stages"] == {k: v for k, v in summary["per_trial"][i].items() if k in m["stages"]}
        assert m["end_reason"] == summary["per_trial"][i]["end_reason"]
        assert set(m["objects_end"]) == {"bottle", "cup"} and isinstance(m["stage_s"], dict)
        assert isinstance(m["interventions"], dict) and isinstance(m["safety_events"], list)
        assert m["recording"]["frames"] == trial["length"] and m["run_id"] == summary["info"]["run_id"]

        ep = ds.episode(i)
        assert 25 <= ep.length <= 50, ep.length               # 1.5 s of the policy at 30 fps
        np.testing.assert_allclose(ep.timestamps, np.arange(ep.length) / 30.0, atol=1e-4)
        assert EMB.within_limits(ep.actions, tol=1e-5)        # what the filter sent
        raw = episode_series(root, i, EMB)
        left = raw["groups"][0]
        assert left["name"] == "left_arm" and len(left["policy"][0]) == ep.length
        policy = np.concatenate([np.array(g["policy"]).T for g in raw["groups"]], axis=1)
        assert policy.shape == ep.actions.shape and np.all(np.isfinite(policy))
        # three series: the raw policy actions, what the filter made of them and sent, what was measured
        assert not np.array_equal(policy, ep.actions) and not np.array_equal(ep.states, ep.actions)
        # an episode starts where the policy took over: at the ready pose (the loop's run.ready_tolerance)
        assert np.abs(ep.states[0] - EMB.default_pose).max() < 0.2
        assert ds.frames("head", i, [0, ep.length - 1]).shape == (2, 96, 96, 3)


def test_eval_status_page_shows_the_running_trial(evaluated):
    live = evaluated["live"]
    assert "trace" in live, "the live page never had a trace and a chunk during the eval"
    trace, chunk = live["trace"], live["chunk"]
    assert [g["name"] for g in trace["groups"]] == [g.name for g in EMB.groups]
    left = trace["groups"][0]
    assert len(left["command"]) == 7 and len(left["command"][0]) == len(trace["t"]) > 5
    assert any(v is not None for v in left["measured"][0])
    assert chunk["horizon"] == 8 and len(chunk["groups"][0]["values"][0]) == 8
    from PIL import Image

    cam = live["camera"]
    assert cam.status_code == 200 and cam.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(cam.content)).size == (96, 96)
    assert live["recording"]["dataset"] == str(evaluated["dataset"])


def test_live_page_shows_camera_trace_and_last_chunk_in_headless_chromium(address, tmp_path):
    """The status page as a browser shows a running loop (fake robot, real policy server)."""
    from lara_g1.robot.control import ControlLoop
    from lara_g1.robot.safety import EStop, EStopSource
    from tests.fakes import FakeRobot, StaticCamera
    from tests.helpers.control import client_infer, run_in_thread, wait_running

    client, infer = client_infer(address)
    estop = EStop()
    loop = ControlLoop(FakeRobot(), StaticCamera((96, 96)), infer, EMB, fast_config(**PATIENT), estop=estop)

    def camera():
        frame = loop.latest_frame()
        return None if frame is None else frame.image

    dash = RobotDashboard(loop.status, estop.trigger, "127.0.0.1", 0, live=lambda: loop, camera=camera,
                          embodiment=EMB).start()
    thread, _ = run_in_thread(loop, 30.0)
    try:
        wait_running(loop, thread)
        with HeadlessChromium(tmp_path) as browser:
            browser.goto(dash.url + "/")
            points = ("Object.fromEntries([...document.querySelectorAll('#{} canvas')]"
                      ".map(c => [c.dataset.group, Number(c.dataset.points)]))")
            browser.wait_for(f"Object.keys({points.format('lastchunk')}).length === 5 && "
                             "document.getElementById('camera').naturalWidth > 0")
            chunk = browser.eval(points.format("lastchunk"))
            assert chunk == {g.name: 8 * g.size for g in EMB.groups}      # H actions of each joint
            trace = browser.eval(points.format("trace"))
            # commanded and measured of each joint, at ~25 samples/s of the ticks so far
            assert set(trace) == {g.name for g in EMB.groups} and all(v >= 2 * 5 * g.size for g, v in
                                                                      zip(EMB.groups, trace.values()))
            assert browser.eval("document.getElementById('camera').naturalWidth") == 96
    finally:
        estop.trigger(EStopSource.DASHBOARD)
        thread.join(10.0)
        dash.stop()
        client.close()


def test_lara_teleop_replays_a_recorded_trial(evaluated, sim, control_yaml):
    assert evaluated["proc"].returncode == 0
    proc = subprocess.run([sys.executable, "-m", "lara_g1.teleop.cli", "replay", str(evaluated["dataset"]),
                           "--episode", "1", "--robot", "g1", "--robot-config", "sim", "--domain", str(DOMAIN),
                           "--control-config", str(control_yaml)],
                          capture_output=True, text=True, timeout=90, env=ENV, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"task {INSTRUCTION!r}" in proc.stdout and "replayed" in proc.stdout


def test_review_page_plays_the_trials_in_headless_chromium(evaluated, tmp_path):
    root = evaluated["dataset"]
    ds = LeRobotDataset(root)
    trials = read_trials(root)
    dash = RobotDashboard(lambda: {"phase": "idle"}, lambda _s: None, "127.0.0.1", 0, dataset=root,
                          embodiment=EMB).start()
    try:
        video = httpx.get(dash.url + "/api/trials/1/video/head", headers={"Range": "bytes=0-99"}, timeout=10)
        assert video.status_code == 206 and len(video.content) == 100                  # seekable
        with HeadlessChromium(tmp_path) as browser:
            browser.goto(dash.url + "/review")
            browser.wait_for("document.querySelectorAll('#trials tbody tr').length === 3")
            outcomes = browser.eval("[...document.querySelectorAll('#trials tbody tr')]"
                                    ".map(r => r.cells[2].textContent)")
            assert outcomes == [t["metadata"]["outcome"] for t in trials]
            for episode in (0, 2):
                browser.goto(f"{dash.url}/review?episode={episode}")
                video = "document.getElementById('video')"
                browser.wait_for(f"{video}.dataset.episode === '{episode}' && {video}.readyState >= 2")
                t1 = browser.eval(f"{video}.currentTime")
                browser.wait_for(f"{video}.currentTime > {t1} + 0.3 || {video}.ended", timeout_s=20)
                duration = browser.eval(f"{video}.duration")
                length = ds.episodes[episode].length
                assert duration == pytest.approx(length / 30.0, abs=0.1)
                assert browser.eval(f"{video}.error") is None
                points = browser.eval("Object.fromEntries([...document.querySelectorAll('#plots canvas')]"
                                      ".map(c => [c.dataset.group, Number(c.dataset.points)]))")
                # command, measured and policy action of every joint at every frame of this trial
                assert points == {g.name: 3 * g.size * length for g in EMB.groups}, points
                assert browser.eval("document.querySelector('#trials tr.sel').dataset.episode") == str(episode)
                # the cursor follows the video: its time is drawn from video.currentTime
                assert float(browser.eval(f"{video}.dataset.time")) > 0
    finally:
        dash.stop()


def test_fine_tuning_on_the_recorded_rollouts_as_they_are(evaluated, tmp_path):
    from lara_g1.lara.train.cli import main as train_main

    out = tmp_path / "finetuned"
    assert train_main(["joint", "--preset", "tiny", "--no-align", "--dataset", str(evaluated["dataset"]),
                       "--steps", "2", "--batch-size", "2", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps_run"] == 2
    assert (out / "model.safetensors").is_file()


def test_a_killed_run_keeps_its_saved_trials(address, sim, control_yaml, tmp_path):
    root = tmp_path / "trials"
    episodes = root / fmt.EPISODES_PATH_TEMPLATE.format(chunk_index=0, file_index=0)
    proc = subprocess.Popen(lara_robot("eval", address, control_yaml, "--trials", "3", "--trial-s", "1.5",
                                       "--out", str(tmp_path / "eval"), "--record", str(root), "--dashboard", "off"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 90
        while not episodes.exists():                           # the first trial is saved
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no trial saved within 90 s"
            time.sleep(0.05)
        time.sleep(1.0)                                        # well into the second trial
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert validate_dataset(root) == []
    kept = read_trials(root)
    assert 1 <= len(kept) <= 2 and kept[0]["metadata"]["trial"] == 0
    assert not (tmp_path / "eval" / "metrics.json").exists()   # the eval never finished

    # a later run records into the same dataset (repairing what the kill left)
    run = subprocess.run(lara_robot("run", address, control_yaml, "--duration", "1.5", "--record", str(root),
                                    "--dashboard", "off"),
                         capture_output=True, text=True, timeout=120, env=ENV)
    assert run.returncode == 0, run.stdout + run.stderr
    assert validate_dataset(root) == []
    after = read_trials(root)
    assert len(after) == len(kept) + 1
    m = after[-1]["metadata"]
    assert m["command"] == "run" and m["outcome"] == "ended" and m["end_reason"] == "end of duration"
    assert m["scene_seed"] == 0 and after[-1]["task"] == INSTRUCTION
