"""The simulated G1's DDS side: the same topics as the robot, driven by :class:`SimWorld`.

Subscribes ``rt/arm_sdk`` (``LowCmd_``; a wrong CRC or a non-finite value is rejected and
counted), ``rt/inspire/cmd`` and the head command topic; publishes ``rt/lowstate`` (with CRC),
``rt/inspire/state``, the head state, the head camera (``lara_g1`` ``Image_``, rendered offscreen
on its own thread at the policy's resolution so physics never waits for a frame) and answers
:class:`lara_g1.robot.sim.control.SimControl` requests (reset, status).

Physics runs in real time in steps of ``model.opt.timestep`` (2 ms); when the host falls behind
by more than ``MAX_CATCH_UP`` the simulator drops the lost time (counted as ``overruns``) rather
than running faster than real time afterwards.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

import numpy as np

from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.crc import lowcmd_crc, lowstate_crc
from lara_g1.robot.dds.messages import (
    GoMotorState_,
    HeadCmd_,
    HeadState_,
    Image_,
    LowCmd_,
    LowState_,
    MotorCmds_,
    MotorStates_,
    SimReply_,
    SimRequest_,
)
from lara_g1.robot.g1 import G1Config
from lara_g1.robot.hands import HandError, HandMapping
from lara_g1.robot.sim.world import SimWorld

log = logging.getLogger(__name__)

MODE_MACHINE = 5       # what the simulated G1 reports in LowState_.mode_machine (29-DoF G1)
MAX_CATCH_UP = 0.1     # s of physics the loop will run back-to-back before dropping time


class SimBridge:
    def __init__(self, world: SimWorld, domain_id: int, interface: str | None = "lo",
                 render_size: tuple[int, int] | None = (224, 224), camera_fps: float = 15.0,
                 state_hz: float = 200.0, robot_config: str = "sim", hands: bool = True, head: bool = True):
        self.world = world
        # hands/head False: that part's state is not published, not even announced (a robot whose
        # Inspire DFX service or head controller is not running); its commands are still taken
        self.domain_id, self.interface = domain_id, interface
        self.render_size = render_size  # (height, width)
        self.camera_fps, self.state_hz = camera_fps, state_hz
        cfg = G1Config.load(robot_config)
        emb = world.emb
        self.mapping = HandMapping.from_embodiment(emb)
        # arm motor slot for each of the world's arm joints (embodiment order left, right)
        slot_of = {}
        for group, first in cfg.arm_motors.items():
            g = emb.group(group)
            for k, idx in enumerate(range(g.start, g.stop)):
                slot_of[idx] = first + k
        self.arm_slots = [slot_of[int(i)] for i in world.arm_idx]
        self.blend_slot = cfg.blend_motor
        self.r_cmd = dds.reader(domain_id, topics.ARM_SDK, LowCmd_, interface)
        self.r_hand = dds.reader(domain_id, cfg.hands.get("cmd_topic", topics.INSPIRE_CMD), MotorCmds_, interface)
        self.r_head = dds.reader(domain_id, cfg.head.get("cmd_topic", topics.HEAD_CMD), HeadCmd_, interface)
        self.r_req = dds.reader(domain_id, topics.SIM_REQUEST, SimRequest_, interface, qos=dds.RELIABLE)
        self.w_state = dds.writer(domain_id, topics.LOWSTATE, LowState_, interface)
        self.w_hand = (dds.writer(domain_id, cfg.hands.get("state_topic", topics.INSPIRE_STATE), MotorStates_, interface)
                       if hands else None)
        self.w_head = (dds.writer(domain_id, cfg.head.get("state_topic", topics.HEAD_STATE), HeadState_, interface)
                       if head else None)
        self.w_cam = dds.writer(domain_id, topics.SIM_CAMERA, Image_, interface)
        self.w_rep = dds.writer(domain_id, topics.SIM_REPLY, SimReply_, interface, qos=dds.RELIABLE)
        self.counters = {"commands": 0, "crc_rejected": 0, "nonfinite_rejected": 0, "hand_commands": 0,
                         "head_commands": 0, "states": 0, "frames": 0, "overruns": 0, "requests": 0}
        self.render_ms: deque[float] = deque(maxlen=100)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._replies: dict[int, SimReply_] = {}
        self.physics_rate_hz = 0.0
        self._restart_clock = False

    # ------------------------------------------------------------------ inbound
    def _take_commands(self) -> None:
        w = self.world
        for msg in self.r_cmd.take(N=32):
            if not isinstance(msg, LowCmd_):
                continue
            if msg.crc != lowcmd_crc(msg):
                self.counters["crc_rejected"] += 1
                if self.counters["crc_rejected"] in (1, 10, 100) or self.counters["crc_rejected"] % 1000 == 0:
                    log.warning("rejected rt/arm_sdk with a wrong CRC (%d so far)", self.counters["crc_rejected"])
                continue
            mc = msg.motor_cmd
            q = np.array([mc[s].q for s in self.arm_slots])
            kp = np.array([mc[s].kp if mc[s].mode == 1 else 0.0 for s in self.arm_slots])
            kd = np.array([mc[s].kd if mc[s].mode == 1 else 0.0 for s in self.arm_slots])
            blend = mc[self.blend_slot].q
            if not (np.all(np.isfinite(q)) and np.all(np.isfinite(kp)) and np.all(np.isfinite(kd))
                    and np.isfinite(blend)):
                self.counters["nonfinite_rejected"] += 1
                continue
            w.set_arm_command(q, kp, kd, blend)
            self.counters["commands"] += 1
        for msg in self.r_hand.take(N=32):
            if isinstance(msg, MotorCmds_):
                try:
                    left, right = self.mapping.from_dfx([c.q for c in msg.cmds])
                except HandError as exc:
                    log.warning("ignoring rt/inspire/cmd: %s", exc)
                    continue
                if np.all(np.isfinite(left)) and np.all(np.isfinite(right)):
                    w.set_hand_targets(left, right)
                    self.counters["hand_commands"] += 1
        for msg in self.r_head.take(N=32):
            if isinstance(msg, HeadCmd_) and len(msg.q) == len(w.head_idx) and np.all(np.isfinite(msg.q)):
                w.set_head_target(np.asarray(msg.q))
                self.counters["head_commands"] += 1

    def _handle_requests(self) -> None:
        for req in self.r_req.take(N=8):
            if not isinstance(req, SimRequest_):
                continue
            self.counters["requests"] += 1
            reply = self._replies.get(req.request_id)
            if reply is None:
                reply = self._answer(req)
                self._replies = dict(list(self._replies.items())[-32:])
                self._replies[req.request_id] = reply
            self.w_rep.write(reply)

    def _answer(self, req: SimRequest_) -> SimReply_:
        try:
            body = json.loads(req.body or "{}")
            if req.command == "reset":
                task = body.get("task", self.world.task.name)
                seed = int(body.get("seed", 0))
                with self.lock:
                    if task != self.world.task.name:
                        self.world = SimWorld(task, seed=seed, embodiment=self.world.emb.name)
                    else:
                        self.world.reset(seed)
                self._restart_clock = True
            elif req.command != "status":
                raise ValueError(f"unknown sim command {req.command!r} (reset | status)")
            return SimReply_(request_id=req.request_id, ok=True, body=json.dumps(self.status()))
        except (ValueError, TypeError, KeyError) as exc:
            return SimReply_(request_id=req.request_id, ok=False, body=json.dumps({"error": str(exc)}))

    def status(self) -> dict:
        s = self.world.status()
        s["counters"] = dict(self.counters)
        if self.render_ms:
            s["render_ms_mean"] = float(np.mean(self.render_ms))
        s["physics_rate_hz"] = self.physics_rate_hz
        return s

    # ------------------------------------------------------------------ outbound
    def _publish_state(self) -> None:
        w = self.world
        q, dq = w.joint_state()
        msg = LowState_(mode_machine=MODE_MACHINE, tick=int(w.time * 1000))
        for i, slot in zip(w.arm_idx, self.arm_slots):
            ms = msg.motor_state[slot]
            ms.mode, ms.q, ms.dq = 1, float(q[i]), float(dq[i])
        msg.crc = lowstate_crc(msg)
        self.w_state.write(msg)
        self.counters["states"] += 1

    def _publish_parts(self) -> None:
        w = self.world
        if self.w_hand is not None:
            entries = self.mapping.to_dfx(w.joint_state()[0])
            self.w_hand.write(MotorStates_(states=[GoMotorState_(q=float(v)) for v in entries]))
        if self.w_head is not None:
            self.w_head.write(HeadState_(q=[float(v) for v in w.data.qpos[w._head_qadr]]))

    # ------------------------------------------------------------------ loops
    def _render_loop(self) -> None:
        import mujoco
        h, wd = self.render_size
        renderer = None
        model_seen = None
        period = 1.0 / self.camera_fps
        next_t = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            with self.lock:
                world = self.world
                qpos = world.data.qpos.copy()
                sim_time = world.time
            if world.model is not model_seen:
                if renderer is not None:
                    renderer.close()
                model_seen = world.model
                render_data = mujoco.MjData(world.model)
                renderer = mujoco.Renderer(world.model, h, wd)
            t0 = time.monotonic()
            render_data.qpos[:] = qpos
            mujoco.mj_kinematics(world.model, render_data)
            mujoco.mj_camlight(world.model, render_data)
            renderer.update_scene(render_data, camera="head")
            image = renderer.render()
            self.render_ms.append((time.monotonic() - t0) * 1000.0)
            seq += 1
            self.w_cam.write(Image_(seq=seq, stamp_ns=time.monotonic_ns(), sim_time=sim_time, height=h,
                                    width=wd, data=image.tobytes()))
            self.counters["frames"] += 1
            next_t = max(next_t + period, time.monotonic())
            self._stop.wait(max(0.0, next_t - time.monotonic()))
        if renderer is not None:
            renderer.close()

    def run(self, duration_s: float | None = None) -> None:
        """Run until :meth:`stop` (or for ``duration_s``)."""
        render = None
        if self.render_size is not None:
            render = threading.Thread(target=self._render_loop, name="sim-render", daemon=True)
            render.start()
        dt = self.world.dt
        state_period = 1.0 / self.state_hz
        part_period = 1.0 / min(self.state_hz, 100.0)
        t_start = time.monotonic()
        t0, steps = t_start, 0
        next_state = next_part = t0
        rate_t, rate_steps = t0, 0
        self._restart_clock = False
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if duration_s is not None and now - t_start > duration_s:
                    break
                self._handle_requests()
                if self._restart_clock:
                    t0, steps, self._restart_clock = now, 0, False
                self._take_commands()
                due = int((now - t0) / dt) - steps
                if due * dt > MAX_CATCH_UP:
                    self.counters["overruns"] += 1
                    t0 += (due * dt - MAX_CATCH_UP)
                    due = int(MAX_CATCH_UP / dt)
                if due > 0:
                    with self.lock:
                        self.world.step(due)
                    steps += due
                    rate_steps += due
                if now >= next_state:
                    self._publish_state()
                    next_state = max(next_state + state_period, now)
                if now >= next_part:
                    self._publish_parts()
                    next_part = max(next_part + part_period, now)
                if now - rate_t >= 2.0:
                    self.physics_rate_hz = rate_steps / (now - rate_t)
                    rate_t, rate_steps = now, 0
                wake = min(next_state, next_part, t0 + (steps + 1) * dt)
                time.sleep(max(0.0, min(wake - time.monotonic(), 0.005)))
        finally:
            self._stop.set()
            if render is not None:
                render.join(timeout=5.0)

    def stop(self) -> None:
        self._stop.set()
