"""The control path over real DDS on loopback against the simulated G1 (lara-sim subprocess) and a
real lara-serve subprocess: what reaches rt/arm_sdk is read back by a DDS reader in the test.

- `lara-robot run --sim`: the first command is the measured pose with blend 0, every command is
  finite, in limits and CRC-valid, its status page answers, and Ctrl-C (SIGINT) fades it out.
- `lara-robot eval --sim`: N trials scored from the sim's stages into metrics.json/CSV.
- a hostile policy (NaN, inf, far out of limits): nothing non-finite or out of limits on the topic.
- stale rt/lowstate (the sim frozen with SIGSTOP): the commands hold and fade out.
- lara-serve killed (SIGKILL) mid-run: hold within 200 ms, faded out within 3 s.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import yaml

from lara_g1.robot.control import ControlLoop
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.crc import lowcmd_crc
from lara_g1.robot.dds.messages import LowCmd_, LowState_
from lara_g1.robot.g1 import G1Config, G1Robot
from lara_g1.robot.interface import RobotState
from lara_g1.robot.safety import StopReason
from lara_g1.robot.sim.process import SimProcess
from tests.helpers.control import EMB, PATIENT, client_infer, fast_config, run_in_thread, wait_for, wait_running
from tests.helpers.dds import fresh_domain
from tests.helpers.serve import free_port, lara_serve

DOMAIN = fresh_domain()
SIM_CFG = G1Config.load("sim").replace(domain_id=DOMAIN)


class ArmSdkRecorder:
    """Records every rt/arm_sdk message seen on the test's domain: (receive time, arm q in the
    embodiment layout (other joints NaN), blend weight, CRC valid)."""

    def __init__(self, robot: G1Robot | LowStateReader | None = None) -> None:
        self.robot = robot                       # also record the measured pose as it goes
        self.states: list[tuple[float, np.ndarray]] = []
        self.reader = dds.reader(DOMAIN, topics.ARM_SDK, LowCmd_, "lo")
        self.slots = []
        for group, first in SIM_CFG.arm_motors.items():
            g = EMB.group(group)
            self.slots += [(g.start + k, first + k) for k in range(g.size)]
        self.arm_idx = np.array([i for i, _ in self.slots])
        self.messages: list[tuple[float, np.ndarray, float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ArmSdkRecorder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self.reader.take(N=64):
                if not isinstance(msg, LowCmd_):
                    continue
                q = np.full(EMB.dim, np.nan, dtype=np.float32)
                for idx, slot in self.slots:
                    q[idx] = msg.motor_cmd[slot].q
                self.messages.append((time.monotonic(), q, float(msg.motor_cmd[SIM_CFG.blend_motor].q),
                                      lowcmd_crc(msg) == msg.crc))
            if self.robot is not None and not self.messages:
                state = self.robot.read_state()
                if state is not None:
                    self.states.append((state.stamp, state.q))
            time.sleep(0.001)

    def pose_gap_at_first_command(self, arm_idx: np.ndarray) -> float:
        """How far the first command is from the closest pose the robot measured in the 0.5 s
        before it arrived (the sender measured its pose a delivery delay earlier)."""
        t0, q0 = self.messages[0][0], self.messages[0][1]
        recent = [q for t, q in self.states if t0 - 0.5 <= t <= t0]
        assert recent, "no measured pose before the first command"
        return min(float(np.max(np.abs(q0[arm_idx] - q[arm_idx]))) for q in recent)

    def since(self, t0: float):
        return [m for m in self.messages if m[0] >= t0]


class LowStateReader:
    """The measured arm pose from rt/lowstate alone, read like a G1Robot's ``read_state()``, for the
    tests that run lara-robot beside this process: a G1Robot here would hold an rt/arm_sdk writer,
    and lara-robot's pre-flight refuses to share the arms with another rt/arm_sdk publisher."""

    def __init__(self) -> None:
        self.reader = dds.reader(DOMAIN, topics.LOWSTATE, LowState_, "lo")
        self._state: RobotState | None = None

    def read_state(self) -> RobotState | None:
        for msg in self.reader.take(N=16):
            if isinstance(msg, LowState_):
                q = np.full(EMB.dim, np.nan, dtype=np.float32)
                for group, first in SIM_CFG.arm_motors.items():
                    g = EMB.group(group)
                    q[g.slice] = [msg.motor_state[first + k].q for k in range(g.size)]
                self._state = RobotState(q=q, stamp=time.monotonic())
        return self._state


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from lara_g1.lara.bundle import create_random_bundle

    return create_random_bundle(tmp_path_factory.mktemp("bundle") / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="module")
def serve(bundle, tmp_path_factory):
    """A real lara-serve subprocess (torch engine); yields (process, address)."""
    with open(tmp_path_factory.mktemp("serve") / "serve.log", "w+") as log, \
            lara_serve(bundle, "torch", log=log, env={**os.environ, "OMP_NUM_THREADS": "1"}) as served:
        yield served


@pytest.fixture(scope="module")
def sim():
    with SimProcess("pour", DOMAIN, render_size=(96, 96), seed=0) as proc:
        yield proc


@pytest.fixture(scope="module")
def robot(sim):
    r = G1Robot(SIM_CFG, EMB)
    r.connect()
    r.wait_for_state(10.0)
    yield r
    r.disconnect()


def sim_loop(robot, address):
    from lara_g1.robot.cameras import SimCamera

    camera = SimCamera(DOMAIN)
    camera.connect()
    # the sim is healthy again (after a reset or a SIGSTOP): a fresh frame and a fresh state
    wait_for(lambda: time.monotonic() - camera.read(timeout_s=5.0).stamp < 0.2)
    wait_for(lambda: time.monotonic() - robot.read_state().stamp < 0.05)
    client, infer = client_infer(address)
    return ControlLoop(robot, camera, infer, EMB, fast_config()), client


def write_config(tmp_path, **safety):
    """The shipped control config with a 1 s ramp-in (the shortest allowed) and a patient hold, as YAML."""
    cfg = yaml.safe_load(open(fast_config().source))  # noqa: SIM115
    cfg["safety"].update({"ramp_in_s": 1.0, **PATIENT, **safety})
    path = tmp_path / "control.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_safe_stream(messages, arm_idx):
    qs = np.stack([q[arm_idx] for _, q, _, _ in messages])
    assert np.all(np.isfinite(qs))
    assert np.all(qs >= EMB.lower[arm_idx] - 1e-5) and np.all(qs <= EMB.upper[arm_idx] + 1e-5)
    assert all(0.0 <= b <= 1.0 for _, _, b, _ in messages)
    assert all(ok for *_, ok in messages), "a command with a wrong CRC was published"


def test_lara_robot_run_sim_cli(serve, sim, tmp_path):
    _, address = serve
    control_yaml = write_config(tmp_path)
    port = free_port()
    with ArmSdkRecorder(LowStateReader()) as rec:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lara_g1.robot.cli", "run", "--task", "pour", "--sim", "--sim-running",
             "--domain", str(DOMAIN), "--server", address,
             "--config", str(control_yaml), "--dashboard", f"127.0.0.1:{port}",
             "--json", str(tmp_path / "run.json")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        statuses = []
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                statuses.append(httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=1.0).json())
            if statuses and statuses[-1].get("phase") in ("ramp", "run") and statuses[-1]["ticks"] >= 50:
                proc.send_signal(signal.SIGINT)                         # Ctrl-C: fade out and exit
                t_sigint = time.monotonic()
                break
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=20)
        time.sleep(0.2)
    assert proc.returncode == 0, out
    msgs = rec.messages
    assert len(msgs) > 100, out
    arm = rec.arm_idx
    assert rec.pose_gap_at_first_command(arm) < 2e-3                    # ramp-in from the measured pose
    assert msgs[0][2] == 0.0
    assert_safe_stream(msgs, arm)
    blends = [m[2] for m in msgs]
    top = int(np.argmax(blends))
    assert blends[top] > 0.3                                            # it was ramping in when stopped
    assert all(b2 >= b1 for b1, b2 in zip(blends[:top], blends[1:top + 1]))
    assert msgs[-1][2] == 0.0                                           # faded out at the end
    assert msgs[-1][0] - t_sigint <= 3.0
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["reason"] == StopReason.ESTOP and result["estop"] == "SIGINT"   # the JSON has the values
    assert result["interventions"]["estop"] == 1
    assert result["period_ms_p50"] > 0 and result["e2e_ms_p50"] > 0
    assert "control period p50/p99" in out
    running = [s for s in statuses if s.get("phase") in ("ramp", "run")]
    assert running and running[-1]["task"] == "pour"
    assert running[-1]["joints"]["command"] is not None


def test_ctrl_c_during_start_up_aborts_and_stops_the_sim(serve):
    _, address = serve
    domain = fresh_domain()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lara_g1.robot.cli", "run", "--task", "pour", "--sim", "--domain", str(domain),
         "--server", address, "--dashboard", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    sim_cmd = f"robot.sim.cli --task pour --domain {domain} "
    wait_for(lambda: subprocess.run(["pgrep", "-f", sim_cmd], capture_output=True).returncode == 0, 30)
    proc.send_signal(signal.SIGINT)                                     # while lara-sim starts up
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "interrupted during start-up; nothing was commanded" in out
    assert subprocess.run(["pgrep", "-f", sim_cmd], capture_output=True).returncode == 1, "lara-sim left behind"


def test_lara_robot_eval_sim_writes_the_metrics(serve, sim, tmp_path):
    _, address = serve
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "-m", "lara_g1.robot.cli", "eval", "--task", "pour", "--trials", "2", "--sim",
         "--sim-running", "--domain", str(DOMAIN), "--server", address, "--trial-s", "1.5",
         "--config", str(write_config(tmp_path, fade_s=0.5)), "--dashboard", "off", "--out", str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["task"] == "pour" and summary["trials"] == 2
    assert set(summary["metrics"]) == {"Grasp-Left", "Grasp-Right", "Full", "Pour"}
    assert [t["trial"] for t in summary["per_trial"]] == [0, 1]
    # each trial ends by its duration (or, on a starved machine, by the watchdog): recorded either way
    assert all(t["end_reason"] for t in summary["per_trial"])
    # where the objects ended (world frame, m) and which stages were reached when
    for t in summary["per_trial"]:
        assert set(t["objects_end"]) == {"bottle", "cup"}
        assert all(len(p) == 3 and -0.5 < p[2] < 2.0 for p in t["objects_end"].values())
        assert set(t["stage_s"]) <= {"Grasp-Left", "Grasp-Right", "Full"}
    assert (out / "trials.csv").read_text().startswith("trial,Grasp-Left,Grasp-Right,Full,end_reason")
    assert "Pour" in (out / "metrics.csv").read_text()
    assert "task pour: 2 trials" in proc.stdout


def test_nan_and_out_of_limit_chunks_never_reach_the_topic(sim, robot):
    from lara_g1.robot.cameras import SimCamera

    rng = np.random.default_rng(3)
    calls = []

    def hostile_policy(obs) -> np.ndarray:
        calls.append(1)
        chunk = rng.uniform(-40, 40, (8, EMB.dim)).astype(np.float32)   # far past every limit
        if len(calls) % 3 == 0:
            chunk[rng.integers(0, 8), rng.integers(0, EMB.dim)] = np.nan
        if len(calls) % 5 == 0:
            chunk[:, EMB.group("left_arm").start] = np.inf
        return chunk

    camera = SimCamera(DOMAIN)
    camera.connect()
    loop = ControlLoop(robot, camera, hostile_policy, EMB, fast_config(fade_s=0.5, **PATIENT))
    with ArmSdkRecorder() as rec:
        result = loop.run(duration_s=1.5)
        time.sleep(0.2)
    assert result.request_errors["bad_chunk"] > 0 and result.interventions["joint_limit"] > 0
    assert len(rec.messages) > 50
    assert_safe_stream(rec.messages, rec.arm_idx)                       # finite, in limits, valid CRC


def test_stale_lowstate_holds_and_fades_out(serve, sim, robot):
    _, address = serve
    loop, client = sim_loop(robot, address)
    with ArmSdkRecorder() as rec:
        thread, box = run_in_thread(loop, 20.0)
        try:
            wait_running(loop, thread)
            os.kill(sim.proc.pid, signal.SIGSTOP)                      # rt/lowstate stops
            t_stop = time.monotonic()
            try:
                thread.join(10.0)
            finally:
                os.kill(sim.proc.pid, signal.SIGCONT)
        finally:
            client.close()
        time.sleep(0.2)
    assert not thread.is_alive()
    result = box["result"]
    assert result.reason in (StopReason.STALE_STATE, StopReason.STALE_COMMANDS), result.reason
    assert result.interventions.get("stale_state", 0) >= 1
    after = rec.since(t_stop + loop.config.safety.state_timeout_s + 0.05)
    assert after, "nothing published after the state went stale"
    arm = rec.arm_idx
    for _, q, _, _ in after:
        np.testing.assert_array_equal(q[arm], after[0][1][arm])        # held
    blends = [b for _, _, b, _ in after]
    assert all(b2 <= b1 for b1, b2 in zip(blends, blends[1:]))
    assert blends[-1] == 0.0 and after[-1][0] - t_stop <= 3.0
    assert_safe_stream(rec.messages, arm)


def test_lara_serve_killed_mid_run_hold_within_200ms_fade_within_3s(serve, sim, robot):
    proc, address = serve
    loop, client = sim_loop(robot, address)
    with ArmSdkRecorder() as rec:
        thread, box = run_in_thread(loop, 20.0)
        try:
            wait_running(loop, thread)
            time.sleep(0.3)
            t_kill = time.monotonic()
            proc.kill()                                                  # SIGKILL lara-serve
            proc.wait(5)
            thread.join(10.0)
        finally:
            client.close()
        time.sleep(0.2)
    assert not thread.is_alive()
    result = box["result"]
    assert result.reason is StopReason.STALE_COMMANDS, result.reason
    assert loop.scheduler.last_received <= t_kill + 0.05         # at most a reply already on its way
    t_kill = max(t_kill, loop.scheduler.last_received)
    arm = rec.arm_idx
    held = rec.since(t_kill + 0.2)
    assert held, "nothing published after lara-serve died"
    for _, q, _, _ in held:                                            # holding 200 ms after the kill
        np.testing.assert_array_equal(q[arm], held[0][1][arm])
    blends = [b for _, _, b, _ in held]
    assert all(b2 <= b1 for b1, b2 in zip(blends, blends[1:]))
    t_zero = next(t for t, _, b, _ in rec.since(t_kill) if b == 0.0)
    assert t_zero - t_kill <= 3.0                                      # faded out within 3 s
    assert_safe_stream(rec.messages, arm)
