"""Helpers shared by the control-loop tests (tests/robot/test_control.py, test_control_sim.py,
test_robot_dashboard.py): a quick control config, a policy client as an ``infer`` callable, and
running and waiting on a loop in a thread. The engine and server fixtures are in
tests/robot/conftest.py."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np

from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.control import ControlConfig, ControlLoop, Observation
from lara_g1.robot.safety import Phase

EMB = load_embodiment("g1")

# For tests that are not about the watchdog's timing: the longest hold the 3 s fade-out budget
# allows (0.2 + 0.8 + 2.0), so that a starved test machine does not end their runs early.
PATIENT = {"hold_s": 0.8}


def fast_config(**safety) -> ControlConfig:
    """The default control config with a 1 s ramp-in (the shortest allowed) to keep tests short."""
    cfg = ControlConfig.load("default")
    return dataclasses.replace(cfg, safety=dataclasses.replace(cfg.safety, **{"ramp_in_s": 1.0, **safety}))


def client_infer(address: str, timeout_s: float = 1.0):
    """A PolicyClient on ``address`` and the control loop's ``infer`` over it (close the client)."""
    from lara_g1.runtime.client import PolicyClient

    client = PolicyClient(address, timeout_s=timeout_s)

    def infer(obs: Observation) -> np.ndarray:
        return client.infer(obs.state, obs.images, deadline_ms=300).actions

    return client, infer


def run_in_thread(loop: ControlLoop, duration: float):
    """``loop.run(duration)`` in a daemon thread; its result lands in the returned box["result"]."""
    box = {}
    t = threading.Thread(target=lambda: box.update(result=loop.run(duration)), daemon=True)
    t.start()
    return t, box


def wait_for(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def wait_running(loop: ControlLoop, thread: threading.Thread, timeout: float = 20.0) -> None:
    """Until the policy drives the robot (ready pose reached, ramped in, chunks flowing); fails at
    once with the reason if the loop ended first."""
    wait_for(lambda: (loop.running and loop.filter.phase is Phase.RUN) or not thread.is_alive(), timeout)
    assert thread.is_alive(), f"the loop ended before running: {loop.filter and loop.filter.fade_reason}"
