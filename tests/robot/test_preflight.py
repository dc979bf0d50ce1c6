"""``lara-robot check`` (robot/preflight.py) against the simulated G1 over real DDS on loopback and a
real lara-serve (PolicyServer on a tiny random bundle): a healthy sim passes, and each day-one fault
makes its check fail (or warn) with its fix: a wrong DDS domain, no hands, a second rt/arm_sdk
publisher (another process), a server for another embodiment, a camera at the wrong size, a slow
server (a delaying ZMQ proxy in front of it). ``lara-robot run`` and ``lara-teleop record --robot g1``
refuse on the fast subset with the same lines."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
import zmq

from lara_g1.core.config import config_path
from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot import preflight
from lara_g1.robot.cli import main
from lara_g1.robot.g1 import G1Config
from lara_g1.robot.hands import FTP_ANGLE_ACT
from lara_g1.robot.sim.process import SimProcess
from tests.fakes.camera import StaticCamera
from tests.helpers.dds import fresh_domain

DOMAINS = [fresh_domain() for _ in range(5)]
DOMAIN, HEALTHY_DOMAIN, NO_HANDS_DOMAIN, SMALL_CAMERA_DOMAIN, WRONG_DOMAIN = DOMAINS
EMB = load_embodiment("g1")
ALL_CHECKS = ["server", "dds.interfaces", "dds.lowstate", "dds.mode_machine", "command.arm_sdk", "command.lowcmd",
              "joints", "hands", "head", "camera", "server.layout", "server.latency", "clock"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sim():
    with SimProcess("pick_place", DOMAIN, render_size=(224, 224)) as proc:
        yield proc


def check(tmp_path, *args: str) -> tuple[int, dict[str, dict]]:
    """``lara-robot check ... --json``: (exit status, {check name: its JSON entry})."""
    out = tmp_path / f"check-{time.monotonic_ns()}.json"
    rc = main(["check", *args, "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["ok"] == (rc == 0)
    return rc, {c["name"]: c for c in report["checks"]}


def statuses(checks: dict[str, dict], status: str) -> set[str]:
    return {name for name, c in checks.items() if c["status"] == status}


def test_lara_robot_check_sim_passes_on_a_healthy_sim(server, tmp_path, capsys):
    rc, checks = check(tmp_path, "--sim", "--domain", str(HEALTHY_DOMAIN), "--server", server.address)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert list(checks) == ALL_CHECKS                                   # the JSON report lists every check
    assert all(set(c) >= {"name", "status", "value", "fix"} for c in checks.values())
    assert statuses(checks, preflight.FAIL) == set() and statuses(checks, preflight.SKIP) == set()
    # the state rate and a late round trip may warn on a starved test machine; all else passes
    assert {"dds.interfaces", "command.arm_sdk", "command.lowcmd", "joints", "hands", "head", "camera",
            "server", "server.layout", "clock", "dds.mode_machine"} <= statuses(checks, preflight.PASS)
    assert statuses(checks, preflight.WARN) <= {"dds.lowstate", "server.latency"}
    assert "rt/lowstate from 127.0.0.1" in checks["dds.interfaces"]["value"] and " via lo" in checks["dds.interfaces"]["value"]
    assert checks["dds.mode_machine"]["value"].startswith("5: 29-DoF G1")
    assert checks["camera"]["data"]["width"] == 224 and checks["camera"]["data"]["fps"] > 3
    latency = checks["server.latency"]["data"]
    assert latency["budget_ms"] == pytest.approx(1e3 * 8 / 30) and latency["p50_ms"] < latency["budget_ms"]
    assert abs(checks["clock"]["data"]["offset_ms"]) < 50
    for name in ALL_CHECKS:                                             # one line per check, in order
        assert f"PASS  {name} " in out or f"WARN  {name} " in out


def test_wrong_domain_fails_with_the_domain_fix(sim, tmp_path, capsys):
    rc, checks = check(tmp_path, "--sim", "--sim-running", "--domain", str(WRONG_DOMAIN))
    assert rc == 1
    low = checks["dds.lowstate"]
    assert low["status"] == preflight.FAIL
    assert f"no rt/lowstate on DDS domain {WRONG_DOMAIN} on lo" in low["value"]
    assert "check --domain / the G1's DDS domain (0)" in low["fix"]
    assert {s["domain"] for s in low["data"]["search"]} == {WRONG_DOMAIN, 0, 1}   # searched every interface
    assert "lo" in {s["interface"] for s in low["data"]["search"]}
    assert checks["hands"]["status"] == checks["head"]["status"] == preflight.SKIP   # nothing here at all
    assert "check --domain / the G1's DDS domain (0)" in capsys.readouterr().out
    rc, checks = check(tmp_path, "--sim", "--sim-running", "--domain", str(DOMAIN))  # the right one
    assert rc == 0 and statuses(checks, preflight.FAIL) == set()


def test_a_search_names_where_rt_lowstate_flows():
    snap = preflight.DdsSnapshot(7, "eth0", 1.0)
    found = [{"interface": "eth0", "domain": 7, "samples": 0}, {"interface": "eth0", "domain": 0, "samples": 480},
             {"interface": "lo", "domain": 0, "samples": 0}]
    result = preflight.check_lowstate(snap, search=found)
    assert result.failed and "it flows on DDS domain 0 via eth0" in result.value
    assert result.fix.startswith("use --domain 0 (robot config")


def test_no_hands_fails_naming_the_inspire_service(tmp_path):
    with SimProcess("pick_place", NO_HANDS_DOMAIN, render_size=None, extra_args=["--no-hands"]):
        cfg = G1Config.load("sim").replace(domain_id=NO_HANDS_DOMAIN)
        fast = preflight.fast_checks(cfg, EMB, expected_hz=preflight.SIM_LOWSTATE_HZ)
        refused = preflight.refusal(fast)
        rc, checks = check(tmp_path, "--sim", "--sim-running", "--domain", str(NO_HANDS_DOMAIN))
    assert rc == 1
    hands = checks["hands"]
    assert hands["status"] == preflight.FAIL
    assert "no rt/inspire/state" in hands["value"] and "the Inspire hands do not answer" in hands["value"]
    assert "Inspire DFX hand service" in hands["fix"] and "inspire_g1" in hands["fix"]
    assert statuses(checks, preflight.FAIL) == {"hands", "camera"}          # this sim renders nothing either
    assert checks["head"]["status"] == checks["dds.lowstate"]["status"] == preflight.PASS
    assert "not measured: left_hand, right_hand" in checks["joints"]["value"]
    assert [r.name for r in fast] == list(preflight.FAST_CHECKS[:-1])   # no server: no layout
    assert refused is not None and "FAIL  hands" in refused and "Inspire DFX hand service" in refused


def test_ftp_hands_answer_over_modbus_or_fail():
    from tests.robot.test_hands import ModbusHand

    servers = [ModbusHand(), ModbusHand()]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    ftp = {side: {"host": "127.0.0.1", "port": srv.server_address[1]} for side, srv in zip(("left", "right"), servers)}
    cfg = G1Config.load("sim").replace(domain_id=WRONG_DOMAIN, hands={"variant": "ftp", "ftp": ftp})
    try:
        servers[0].registers[FTP_ANGLE_ACT] = 250                 # left pinky a quarter open
        result = preflight.check_hands(preflight.listen(cfg, 0.2, grace_s=0.0), cfg)
        assert result.status == preflight.PASS, result.line()
        assert f"Modbus TCP left 127.0.0.1:{ftp['left']['port']}" in result.value and "left [0.25, 1.0" in result.value
    finally:
        servers[0].shutdown()
        servers[0].server_close()
    result = preflight.check_hands(preflight.listen(cfg, 0.2, grace_s=0.0), cfg)
    assert result.failed and "the FTP hands do not answer" in result.value and "left hand: cannot reach" in result.value
    servers[1].shutdown()
    servers[1].server_close()


PUBLISHER = """
import sys, time
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.crc import lowcmd_crc
from lara_g1.robot.dds.messages import LowCmd_
writer = dds.writer(int(sys.argv[1]), topics.ARM_SDK, LowCmd_, "lo")
msg = LowCmd_(mode_machine=5)   # every motor off, blend weight 0: moves nothing
msg.crc = lowcmd_crc(msg)
print("publishing", flush=True)
while True:
    writer.write(msg)
    time.sleep(0.02)
"""


def wait_until_no_other_arm_sdk_publisher(timeout_s: float = 30.0) -> None:
    """The shared sim's domain free of other rt/arm_sdk writers: a process that just exited stays in
    DDS discovery until its lease ends, and the tests that expect exactly one failing check must not
    see an earlier test's publisher."""
    cfg = G1Config.load("sim").replace(domain_id=DOMAIN)
    deadline = time.monotonic() + timeout_s
    while True:
        refused = preflight.refusal(preflight.fast_checks(cfg, EMB, expected_hz=preflight.SIM_LOWSTATE_HZ))
        if refused is None:
            return
        assert time.monotonic() < deadline, f"still refused after {timeout_s:.0f} s: {refused}"


def test_a_second_arm_sdk_publisher_fails_and_run_and_record_refuse(sim, server, tmp_path, capsys):
    cfg = G1Config.load("sim").replace(domain_id=DOMAIN)
    before = preflight.fast_checks(cfg, EMB, expected_hz=preflight.SIM_LOWSTATE_HZ)
    assert preflight.refusal(before) is None, preflight.refusal(before)
    other = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(DOMAIN)], stdout=subprocess.PIPE, text=True,
                             env=ENV)
    try:
        assert other.stdout.readline().strip() == "publishing"
        rc, checks = check(tmp_path, "--sim", "--sim-running", "--domain", str(DOMAIN))
        assert rc == 1
        arm = checks["command.arm_sdk"]
        assert arm["status"] == preflight.FAIL and statuses(checks, preflight.FAIL) == {"command.arm_sdk"}
        assert f"1 other publisher(s) on rt/arm_sdk: pid {other.pid} (python) on host" in arm["value"]
        assert "commands in 1.0 s" in arm["value"] and "stop the other controller" in arm["fix"]
        line = next(ln for ln in capsys.readouterr().out.splitlines() if "command.arm_sdk" in ln)

        # lara-robot run refuses with the same line, before commanding anything
        assert main(["run", "--task", "pick_place", "--sim", "--sim-running", "--domain", str(DOMAIN),
                     "--server", server.address, "--dashboard", "off"]) == 1
        err = capsys.readouterr().err
        assert "pre-flight check failed, nothing was commanded" in err
        assert line.split(", ")[0] in err and f"pid {other.pid}" in err
        # and so does lara-teleop record --robot g1 (here pointed at the sim's domain)
        cam = tmp_path / "camera.yaml"
        cam.write_text(yaml.safe_dump({"type": "sim", "domain_id": DOMAIN}))
        rec = subprocess.run([sys.executable, "-m", "lara_g1.teleop.cli", "record", "--task", "pick_place",
                              "--episodes", "1", "--out", str(tmp_path / "ds"), "--source", "synthetic",
                              "--robot", "g1", "--robot-config", "sim", "--domain", str(DOMAIN),
                              "--camera-config", str(cam), "--episode-time", "1"],
                             capture_output=True, text=True, timeout=120, env=ENV)
        assert rec.returncode == 1, rec.stdout + rec.stderr
        assert "pre-flight check failed" in rec.stderr and f"FAIL  command.arm_sdk  1 other publisher(s) on " \
                                                            f"rt/arm_sdk: pid {other.pid}" in rec.stderr
        assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())
    finally:
        other.send_signal(signal.SIGINT)    # a clean exit: its writer leaves DDS discovery at once
        try:
            other.wait(10)
        except subprocess.TimeoutExpired:
            other.kill()
            other.wait(5)


@pytest.fixture(scope="module")
def other_embodiment_server(tmp_path_factory):
    """lara-serve on a tiny random bundle of another embodiment: the G1 without its head (26 joints)."""
    from lara_g1.lara.bundle import create_random_bundle
    from lara_g1.runtime.engines import load_engine
    from lara_g1.runtime.server import PolicyServer

    root = tmp_path_factory.mktemp("other")
    raw = yaml.safe_load(config_path("embodiment/g1.yaml").read_text())
    raw["name"], raw["embodiment_id"] = "g1_headless", 1
    raw["groups"].pop("head")
    raw["joints"] = [j for j in raw["joints"] if not j["name"].startswith("head_")]
    (root / "g1_headless.yaml").write_text(yaml.safe_dump(raw))
    bundle = create_random_bundle(root / "bundle", preset="tiny", seed=0, embodiment=str(root / "g1_headless.yaml"))
    engine = load_engine(bundle, "torch")
    srv = PolicyServer(engine, bind="tcp://127.0.0.1:*", seed=0).start()
    yield srv
    srv.stop()
    engine.close()


def test_a_server_for_another_embodiment_fails_and_run_refuses(sim, other_embodiment_server, tmp_path, capsys):
    wait_until_no_other_arm_sdk_publisher()
    address = other_embodiment_server.address
    rc, checks = check(tmp_path, "--sim", "--sim-running", "--domain", str(DOMAIN), "--server", address,
                       "--infer-calls", "2")
    assert rc == 1
    layout = checks["server.layout"]
    assert layout["status"] == preflight.FAIL and statuses(checks, preflight.FAIL) == {"server.layout"}
    assert ("the served policy's joint layout (embodiment 'g1_headless': 26 joints, this robot has 28) is not "
            "this robot's g1 layout") in layout["value"]
    assert "serve a policy trained for the g1 embodiment" in layout["fix"]
    assert checks["server"]["status"] == preflight.PASS                  # it answers; it is the wrong policy
    assert checks["server.latency"]["status"] == preflight.SKIP
    capsys.readouterr()
    assert main(["run", "--task", "pick_place", "--sim", "--sim-running", "--domain", str(DOMAIN),
                 "--server", address, "--dashboard", "off"]) == 1
    assert f"FAIL  server.layout    {layout['value']}" in capsys.readouterr().err


def test_the_layout_check_names_cameras_the_robot_does_not_have():
    meta = {"embodiment": "g1", "joint_names": list(EMB.joint_names), "cameras": {"head": [224, 224]}}
    assert preflight.check_layout(meta, EMB, ["head"]).status == preflight.PASS
    result = preflight.check_layout({**meta, "cameras": {"wrist": [224, 224]}}, EMB, ["head"])
    assert result.failed and "it wants cameras ['wrist'], this robot has ['head']" in result.value
    assert "cameras:" in result.fix


def test_a_camera_at_the_wrong_size_warns(server, tmp_path):
    # a 5 Hz action rate (a 1.6 s chunk budget): a starved test machine's round trips stay out of it
    control = yaml.safe_load(config_path("control/default.yaml").read_text())
    control["scheduler"]["policy_hz"] = 5.0
    (tmp_path / "control.yaml").write_text(yaml.safe_dump(control))
    with SimProcess("pick_place", SMALL_CAMERA_DOMAIN, render_size=(96, 96)):
        rc, checks = check(tmp_path, "--sim", "--sim-running", "--domain", str(SMALL_CAMERA_DOMAIN),
                           "--server", server.address, "--infer-calls", "2", "--config", str(tmp_path / "control.yaml"))
    camera = checks["camera"]
    assert camera["status"] == preflight.WARN and rc == 0                # a warning, not a refusal
    assert camera["value"].startswith("96x96 at ")
    assert "frames are resized to the policy's 224x224 input" in camera["value"]
    assert "lara-sim --render 224x224" in camera["fix"]
    assert statuses(checks, preflight.WARN) - {"dds.lowstate"} == {"camera"}


@pytest.mark.parametrize(("size", "policy", "status", "says"), [
    ((224, 224), [224, 224], preflight.PASS, "the same"),
    ((480, 640), [480, 640], preflight.PASS, "the same"),
    ((480, 640), [224, 224], preflight.PASS, "frames are resized to it"),      # a lara-g1 model input
    ((224, 224), [480, 640], preflight.WARN, "GR00T N1.6"),                    # a raw camera size
    ((96, 96), [224, 224], preflight.WARN, "resized to the policy's 224x224"),
])
def test_camera_sizes_against_the_policys(size, policy, status, says):
    result, frame = preflight.check_camera(StaticCamera(size), {"head": policy}, ["head"], seconds=0.2)
    assert result.status == status and says in result.value + result.fix, result.line()
    assert frame.image.shape == (*size, 3)


def test_the_realsense_driver_reports_its_stream_through_the_camera_check(tmp_path):
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 (lara-g1[realsense]) not installed")
    from lara_g1.robot.cameras.realsense import RealSenseCamera
    from tests.robot.test_cameras import _banded_frames, _record_db3

    _record_db3(tmp_path / "d455.db3", _banded_frames())                  # a 64x48 recording at 30 fps
    camera = RealSenseCamera({"recording": str(tmp_path / "d455.db3"), "repeat": True})
    result, frame = preflight.check_camera(camera, {"head": [224, 224]}, ["head"], seconds=0.3)
    info = result.data["info"]
    assert (info["width"], info["height"], info["fps"]) == (64, 48, 30)    # from the active stream profile
    assert result.status == preflight.WARN and result.value.startswith("64x48 at ")
    assert "resized to the policy's 224x224" in result.value and frame.image.shape == (48, 64, 3)


class SlowProxy:
    """A ZMQ proxy that holds every message ``delay_s / 2`` each way: a server far away."""

    def __init__(self, backend: str, delay_s: float) -> None:
        self.ctx = zmq.Context()
        self.front = self.ctx.socket(zmq.ROUTER)
        port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.back = self.ctx.socket(zmq.DEALER)
        self.back.connect(backend)
        self.half = delay_s / 2
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pending: list[tuple[float, zmq.Socket, list[bytes]]] = []
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        while not self._stop.is_set():
            for sock, _ in poller.poll(5):
                target = self.back if sock is self.front else self.front
                pending.append((time.monotonic() + self.half, target, sock.recv_multipart()))
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                item[1].send_multipart(item[2])
                pending.remove(item)

    def __enter__(self) -> "SlowProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.front.close(0)
        self.back.close(0)
        self.ctx.term()


def test_a_slow_server_fails_the_chunk_budget(sim, server, tmp_path):
    wait_until_no_other_arm_sdk_publisher()
    with SlowProxy(server.address, delay_s=0.35) as proxy:
        rc, checks = check(tmp_path, "--sim", "--sim-running", "--domain", str(DOMAIN), "--server", proxy.address,
                           "--infer-calls", "4")
    assert rc == 1
    latency = checks["server.latency"]
    assert latency["status"] == preflight.FAIL and statuses(checks, preflight.FAIL) == {"server.latency"}
    assert latency["data"]["p50_ms"] >= 350 and latency["data"]["budget_ms"] == pytest.approx(1e3 * 8 / 30)
    assert "the robot would run out of actions before the next chunk arrives, chunk after chunk" in latency["value"]
    assert "faster GPU or engine" in latency["fix"]
    assert abs(checks["clock"]["data"]["offset_ms"]) < 50               # the delay is symmetric


def test_result_lines_and_json():
    r = preflight.CheckResult("hands", preflight.FAIL, "no rt/inspire/state", "start it", {"q": np.array([1.0, np.nan])})
    assert r.line() == "FAIL  hands            no rt/inspire/state  -> fix: start it"
    assert r.to_dict()["data"] == {"q": [1.0, None]}
    assert preflight.CheckResult("joints", preflight.PASS, "ok", "unused").line() == "PASS  joints           ok"
