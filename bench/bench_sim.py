"""Simulated G1 numbers: physics rate, offscreen render time, DDS state->command round trip.

    MUJOCO_GL=egl python bench/bench_sim.py [--seconds 5]

1. physics: SimWorld.step throughput in process (steps/s; real time needs 500);
2. render: ms per head-camera frame at 224x224 and 640x480 (EGL software rendering here);
3. lara-sim in real time: achieved physics rate and render time from its status;
4. DDS round trip on loopback: this process plays the robot and publishes rt/lowstate with a
   counter in `tick`; a G1Robot in a subprocess answers every new state at once with a LowCmd_
   on rt/arm_sdk (built by G1Robot.build_lowcmd: mode_machine, gains, CRC) carrying the tick in
   `reserve[0]`; the time from publishing state to receiving its command is the round trip.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

ECHO = r"""
import sys, time
from lara_g1.robot.dds.crc import lowcmd_crc
from lara_g1.robot.g1 import G1Config, G1Robot
domain, seconds = int(sys.argv[1]), float(sys.argv[2])
cfg = G1Config.load("sim").replace(domain_id=domain, hands={"variant": "dfx"}, head={"driver": "none"})
robot = G1Robot(cfg)
robot.connect()
q = robot.emb.default_pose.copy()
last, end = None, time.monotonic() + seconds
while time.monotonic() < end:
    low = robot._lowstate
    if low is not None and low.tick != last:
        last = low.tick
        cmd = robot.build_lowcmd(q, 1.0)
        cmd.reserve[0] = low.tick
        cmd.crc = lowcmd_crc(cmd)
        robot._cmd_writer.write(cmd)
    time.sleep(0.0002)
robot.disconnect()
"""


def pct(values, p):
    return float(np.percentile(np.asarray(values), p))


def bench_physics(seconds: float) -> None:
    from lara_g1.robot.sim.world import SimWorld

    world = SimWorld("pour")
    world.set_hand_targets(np.zeros(6), np.zeros(6))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        world.step(50)
        n += 50
    rate = n / (time.perf_counter() - t0)
    print(f"physics: {rate:.0f} steps/s in process (dt {world.dt * 1000:.0f} ms: {rate * world.dt:.1f}x real time)")


def bench_render() -> None:
    import mujoco

    from lara_g1.robot.sim.world import SimWorld

    world = SimWorld("pick_place")
    for h, w in ((224, 224), (480, 640)):
        r = mujoco.Renderer(world.model, h, w)
        r.update_scene(world.data, camera="head")
        r.render()
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            r.update_scene(world.data, camera="head")
            r.render()
            times.append((time.perf_counter() - t0) * 1000)
        r.close()
        print(f"render {w}x{h}: p50 {pct(times, 50):.1f} ms, p90 {pct(times, 90):.1f} ms per frame "
              f"(MUJOCO_GL={os.environ['MUJOCO_GL']})")


def bench_sim_process(seconds: float) -> None:
    from lara_g1.robot.sim.control import SimControl
    from lara_g1.robot.sim.process import SimProcess

    domain = random.randint(100, 230)
    with SimProcess("pick_place", domain, render_size=(224, 224), camera_fps=15.0):
        time.sleep(seconds)
        st = SimControl(domain).status()
    c = st["counters"]
    print(f"lara-sim (224x224 camera at 15 fps requested): physics {st['physics_rate_hz']:.0f} Hz (target 500), "
          f"render {st.get('render_ms_mean', float('nan')):.1f} ms/frame, {c['frames']} frames and {c['states']} "
          f"rt/lowstate in ~{seconds + 0.5:.0f} s, {c['overruns']} overruns")


def bench_round_trip(seconds: float) -> None:
    from lara_g1.robot.dds import participant as dds
    from lara_g1.robot.dds.crc import lowstate_crc
    from lara_g1.robot.dds.messages import LowCmd_, LowState_

    domain = random.randint(100, 230)
    w = dds.writer(domain, "rt/lowstate", LowState_, "lo")
    r = dds.reader(domain, "rt/arm_sdk", LowCmd_, "lo")
    echo = subprocess.Popen([sys.executable, "-c", ECHO, str(domain), str(seconds + 4)])
    sent: dict[int, float] = {}
    rtt = []
    tick, t_end = 0, time.monotonic() + seconds + 3
    try:
        while time.monotonic() < t_end:
            tick += 1
            msg = LowState_(mode_machine=5, tick=tick)
            msg.crc = lowstate_crc(msg)
            sent[tick] = time.monotonic()
            w.write(msg)
            deadline = time.monotonic() + 0.005  # 200 Hz
            while time.monotonic() < deadline:
                for cmd in r.take(N=16):
                    if isinstance(cmd, LowCmd_) and cmd.reserve[0] in sent:
                        rtt.append((time.monotonic() - sent.pop(cmd.reserve[0])) * 1000)
                time.sleep(0.0002)
    finally:
        echo.wait(timeout=30)
    rtt = rtt[50:]  # discovery / warm-up
    print(f"DDS rt/lowstate -> G1Robot -> rt/arm_sdk round trip (loopback, 2 processes): "
          f"p50 {pct(rtt, 50):.2f} ms, p90 {pct(rtt, 90):.2f} ms, p99 {pct(rtt, 99):.2f} ms over {len(rtt)} samples")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    bench_physics(min(args.seconds, 3.0))
    bench_render()
    bench_sim_process(args.seconds)
    bench_round_trip(args.seconds)


if __name__ == "__main__":
    main()
