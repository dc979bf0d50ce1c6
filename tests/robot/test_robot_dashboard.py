"""The robot status page over real HTTP (uvicorn) while a control loop runs against a real
PolicyServer: live joint and latency numbers (also as rendered by headless Chromium, where
installed), and the E-STOP button's POST really fades out."""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import httpx
import numpy as np

from lara_g1.robot.control import ControlLoop
from lara_g1.robot.dashboard import RobotDashboard
from lara_g1.robot.safety import EStop, EStopSource, StopReason
from tests.fakes import FakeRobot, StaticCamera
from tests.helpers.control import EMB, PATIENT, client_infer, fast_config, run_in_thread, wait_for, wait_running


def render_in_chromium(url: str, tmp_path) -> str | None:
    """The page's DOM after its scripts ran, from headless Chromium (None where not installed)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'p'}",
         "--virtual-time-budget=2000", "--dump-dom", url + "/"], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_status_page_and_estop_over_http(server, tmp_path):      # server: tests/robot/conftest.py
    robot = FakeRobot()
    client, infer = client_infer(server.address)
    estop = EStop()
    loop = ControlLoop(robot, StaticCamera(), infer, EMB, fast_config(**PATIENT), estop=estop)
    dash = RobotDashboard(loop.status, estop.trigger, "127.0.0.1", 0).start()
    thread, box = run_in_thread(loop, 30.0)
    try:
        with httpx.Client(base_url=dash.url, timeout=5.0) as http:
            wait_for(lambda: http.get("/healthz").status_code == 200)
            wait_running(loop, thread)
            def measured() -> bool:   # the first chunk's latency and at least two ticks' period
                s = http.get("/api/status").json()
                return s["latency"]["e2e_ms_p50"] is not None and s["loop"]["period_ms_p50"] is not None
            wait_for(measured)
            status = http.get("/api/status").json()
            assert status["phase"] in ("run", "hold")                 # hold: a late chunk on a busy machine
            joints = status["joints"]
            assert joints["names"] == list(EMB.joint_names)
            assert len(joints["measured"]) == len(joints["command"]) == EMB.dim
            assert status["loop"]["period_ms_p50"] > 0
            assert status["chunks"]["chunks"] > 0 and status["safety"]["blend"] == 1.0
            page = http.get("/").text
            assert "E-STOP" in page and "/api/estop" in page

            t_press = time.monotonic()
            reply = http.post("/api/estop")
            assert reply.status_code == 200 and reply.json()["estop"] is True
            thread.join(10.0)
            assert not thread.is_alive()
            after = http.get("/api/status").json()
            assert after["safety"]["estop"] == "dashboard"
            assert after["safety"]["interventions"]["estop"] == 1
            dom = render_in_chromium(dash.url, tmp_path)
            if dom is not None:                 # the page as a browser shows it, from the same numbers
                assert 'class="phase-stopped">stopped (e-stop: dashboard)<' in dom
                assert re.search(r'<tr><td>left_elbow</td><td>-?[0-9]+\.[0-9]{3}</td><td>-?[0-9]+\.[0-9]{3}</td>', dom)
                assert re.search(r'id="period">[0-9]+\.[0-9]{2} / [0-9]+\.[0-9]{2}<', dom)
                assert "<tr><td>estop</td><td>1</td></tr>" in dom
                assert re.search(r'<button id="estop" type="button" disabled', dom)
    finally:
        dash.stop()
        client.close()
    assert box["result"].reason is StopReason.ESTOP and box["result"].estop is EStopSource.DASHBOARD
    blends = [s.blend for s in robot.sent if s.time > t_press]
    assert all(b2 <= b1 for b1, b2 in zip(blends, blends[1:]))
    assert blends[-1] == 0.0
    t_zero = next(s.time for s in robot.sent if s.blend == 0.0 and s.time > t_press)
    assert t_zero - t_press <= 3.0
    held = [s.q for s in robot.sent if s.time > t_press + 0.05]
    assert np.ptp(np.stack(held), axis=0).max() == 0.0         # the e-stop holds the pose while fading
