"""``lara-robot``: run a served policy on the G1 (or the simulated G1), and evaluate it.

    lara-robot run  --task pour --server tcp://HOST:5555 [--sim] [--duration S] [--record DIR]
    lara-robot eval --task pour --trials N [--sim] [--server ...] [--out DIR] [--record DIR | --no-record]
    lara-robot check [--sim] [--server tcp://HOST:5555] [--json FILE]   (pre-flight; moves nothing)
    lara-robot review DIR [--dashboard HOST:PORT]   (the review page of recorded trials)

Every command goes camera + state → lara-serve → chunk scheduler → safety filter → robot.
E-stop: SPACE/e/Esc on the terminal, the dashboard's button (POST /api/estop), Ctrl-C or
SIGTERM; each fades the arm_sdk blend weight out (never zero gains).

Each trial (eval: by default into OUT/dataset; run: with --record DIR) is saved as an episode of
a LeRobot v3.0 dataset when it ends (robot/recording.py), reviewed on the status page's /review.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lara_g1.core.config import load_config
from lara_g1.core.embodiment import Embodiment, load_embodiment
from lara_g1.robot.cameras.base import Camera
from lara_g1.robot.control import CameraConfig, ControlConfig, ControlError, ControlLoop, Observation, RunResult
from lara_g1.robot.evaluation import (
    FULL,
    EvaluationError,
    Task,
    TrialRecord,
    ask_stages,
    format_table,
    load_tasks,
    write_results,
)
from lara_g1.robot.interface import Robot
from lara_g1.robot.keyboard import KeyboardEStop, ask_yes_no
from lara_g1.robot.recording import RecordingError
from lara_g1.robot.safety import EStop, EStopSource, SafetyConfigError, SafetyError, StopReason

if TYPE_CHECKING:  # imported where used: the client needs zmq, SimControl a DDS participant, recording av
    from lara_g1.lara.data.writer import LeRobotWriter
    from lara_g1.robot.recording import TrialRecorder
    from lara_g1.robot.sim.control import SimControl
    from lara_g1.runtime.client import PolicyClient

log = logging.getLogger("lara-robot")

SIM_DOMAIN = 1  # Unitree's simulator convention (docs/ROBOT.md, "Domains")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lara-robot", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    tasks = sorted(load_tasks())

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--task", required=True, choices=tasks, help="the task to run")
        sp.add_argument("--server", default="tcp://127.0.0.1:5555", help="lara-serve address")
        sp.add_argument("--token-file", type=Path, help="file holding lara-serve's token")
        sp.add_argument("--sim", action="store_true", help="drive the simulated G1 (lara-sim) instead of the robot")
        sp.add_argument("--sim-running", action="store_true",
                        help="with --sim: use a lara-sim already running on --domain instead of starting one")
        sp.add_argument("--domain", type=int, help=f"DDS domain id (default: {SIM_DOMAIN} with --sim, "
                        "else the robot config's)")
        sp.add_argument("--robot-config", default=None,
                        help="G1 config: sim, real or a YAML path (default: sim with --sim, else real)")
        sp.add_argument("--camera-config", default=None,
                        help="YAML camera config for the real robot (robot.cameras.make_camera; default a D455); ignored with --sim")
        sp.add_argument("--config", default="default", help="control config: a name in configs/control or a path")
        sp.add_argument("--instruction", help="language instruction (default: the task's)")
        sp.add_argument("--seed", type=int, default=0, help="sim scene seed")
        sp.add_argument("--dashboard", default="127.0.0.1:8081", help="HOST:PORT of the status page, or 'off'")
        sp.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        rec = sp.add_mutually_exclusive_group()
        rec.add_argument("--record", type=Path, metavar="DIR",
                         help="record each trial as an episode of the LeRobot v3.0 dataset DIR (created, or "
                              "extended if it holds one)" + (" (default: OUT/dataset)" if sp.prog.endswith("eval")
                                                             else ""))
        rec.add_argument("--no-record", action="store_true", help="record nothing")

    run = sub.add_parser("run", help="run the policy for a while")
    common(run)
    run.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")
    run.add_argument("--json", type=Path, help="also write the run's numbers to this JSON file")

    ev = sub.add_parser("eval", help="evaluate over N trials (the paper's G1-Real metrics)")
    common(ev)
    ev.add_argument("--trials", type=int, required=True, help="number of trials")
    ev.add_argument("--trial-s", type=float, help="seconds per trial (default: the task's)")
    ev.add_argument("--out", type=Path, default=Path("eval"), help="output directory (default ./eval)")

    ck = sub.add_parser("check", help="pre-flight: check the robot, its network, camera and the policy server "
                        "(moves nothing); exit status 1 on any fail")
    ck.add_argument("--sim", action="store_true", help="check the simulated G1 (starts lara-sim unless --sim-running)")
    ck.add_argument("--sim-running", action="store_true", help="with --sim: a lara-sim already running on --domain")
    ck.add_argument("--task", default="pick_place", choices=tasks, help="with --sim: the scene lara-sim starts")
    ck.add_argument("--seed", type=int, default=0, help="with --sim: the scene seed")
    ck.add_argument("--server", help="lara-serve address to check (without it the server checks are skipped)")
    ck.add_argument("--token-file", type=Path, help="file holding lara-serve's token")
    ck.add_argument("--server-timeout", type=float, default=2.0, help="seconds per server request (default 2)")
    ck.add_argument("--domain", type=int, help=f"DDS domain id (default: {SIM_DOMAIN} with --sim, else the robot "
                    "config's)")
    ck.add_argument("--interface", help="network interface for DDS (default: the robot config's dds.interface)")
    ck.add_argument("--robot-config", default=None,
                    help="G1 config: sim, real or a YAML path (default: sim with --sim, else real)")
    ck.add_argument("--camera-config", default=None, help="YAML camera config for the real robot (default a D455)")
    ck.add_argument("--config", default="default", help="control config (its scheduler.policy_hz sets the chunk "
                    "budget)")
    ck.add_argument("--window", type=float, default=1.0, help="seconds to listen to DDS and read the camera")
    ck.add_argument("--infer-calls", type=int, default=20, help="timed inference round trips (default 20)")
    ck.add_argument("--joint-margin", type=float, default=0.05, help="rad a joint must stay inside its limits")
    ck.add_argument("--json", type=Path, help="also write every check (name, status, value, fix) to this JSON file")
    ck.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    rv = sub.add_parser("review", help="serve the review page of a dataset of recorded trials (until Ctrl-C)")
    rv.add_argument("dataset", type=Path, help="the dataset (lara-robot eval's OUT/dataset, or --record DIR)")
    rv.add_argument("--dashboard", default="127.0.0.1:8081", help="HOST:PORT to serve it on")
    rv.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


# ---------------------------------------------------------------------------------------------
class Session:
    """The pieces one lara-robot command runs with, opened and closed in the right order."""

    def __init__(self, args: argparse.Namespace, embodiment: Embodiment, config: ControlConfig,
                 task: Task, estop: EStop) -> None:
        self.args = args
        self.emb = embodiment
        self.config = config
        self.task = task
        self.estop = estop
        self.stack = contextlib.ExitStack()
        self.client: PolicyClient | None = None
        self.robot: Robot | None = None
        self.camera: Camera | None = None
        self.sim_control: SimControl | None = None
        self.camera_name = "head"
        self.horizon = 8
        self.current: ControlLoop | None = None
        self.status_extra: dict[str, Any] = {"task": task.name}
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.record_root: Path | None = _record_root(args)
        self.writer: LeRobotWriter | None = None
        self.recorder: TrialRecorder | None = None

    def open(self) -> "Session":
        args = self.args
        from lara_g1.runtime.client import PolicyClient, ServerError, ServerTimeout

        token = _read_token(args.token_file) if args.token_file else None
        self.client = PolicyClient(args.server, token=token, timeout_s=self.config.run.client_timeout_s)
        self.stack.callback(self.client.close)
        try:
            meta = self.client.metadata()
        except ServerTimeout:
            raise ControlError(f"lara-serve does not answer at {args.server}: is it running "
                               f"(lara-serve --policy BUNDLE --bind {args.server})?") from None
        except ServerError as exc:
            raise ControlError(f"lara-serve at {args.server} refused metadata: {exc}") from None
        from lara_g1.robot import preflight
        from lara_g1.robot.g1 import G1Config, G1Robot

        # the pre-flight's fast subset (robot/preflight.py; lara-robot check runs them all): the
        # served layout before anything starts, the robot's side once it is connected
        layout = preflight.check_layout(meta, self.emb, G1Config.load(args.robot_config or
                                                                      ("sim" if args.sim else "real")).cameras)
        if layout.failed:
            raise ControlError(preflight.refusal([layout]))
        cameras = meta.get("cameras") or {"head": [224, 224]}
        self.camera_name, size = next(iter(cameras.items()))
        self.horizon = int(meta.get("action_horizon", 8))
        self.status_extra.update(model=meta.get("model_id"), engine=meta.get("engine"), server=args.server)

        if args.sim:
            domain = SIM_DOMAIN if args.domain is None else args.domain
            if not args.sim_running:
                from lara_g1.robot.sim.process import SimProcess

                sim = SimProcess(self.task.name, domain_id=domain, render_size=(int(size[0]), int(size[1])),
                                 seed=args.seed)
                self.stack.push(sim)    # its exit (stop) is registered before it starts: a Ctrl-C
                sim.start()             # anywhere in start() still stops the subprocess
            from lara_g1.robot.sim.control import SimControl

            self.sim_control = SimControl(domain)
            cfg = G1Config.load(args.robot_config or "sim").replace(domain_id=domain)
        else:
            cfg = G1Config.load(args.robot_config or "real")
            if args.domain is not None:
                cfg = cfg.replace(domain_id=args.domain)
        self.robot = G1Robot(cfg, self.emb)
        self.robot.connect()
        self.stack.callback(self.robot.disconnect)
        if args.sim:
            from lara_g1.robot.cameras import SimCamera

            self.camera = SimCamera(cfg.domain_id)
        else:
            from lara_g1.robot.cameras import make_camera

            self.camera = make_camera(_camera_config(args.camera_config))
        self.camera.connect()
        self.stack.callback(self.camera.disconnect)
        checks = preflight.fast_checks(cfg, self.emb, expected_hz=preflight.SIM_LOWSTATE_HZ if args.sim
                                       else preflight.ROBOT_LOWSTATE_HZ)
        for result in [layout, *checks]:
            log.info("pre-flight: %s", result.line())
        refused = preflight.refusal([layout, *checks])
        if refused:
            raise ControlError(refused)
        if self.record_root is not None:
            self._open_recording()
        log.info("policy %s (%s) at %s; robot %s on DDS domain %d; camera %s",
                 meta.get("model_id"), meta.get("engine"), args.server, cfg.name, cfg.domain_id, self.camera_name)
        return self

    def _open_recording(self) -> None:
        from lara_g1.robot.recording import open_trial_dataset

        frame = self.camera.read(timeout_s=5.0)        # its size is the video's
        fps = max(1, round(self.config.scheduler.policy_hz))
        self.writer = open_trial_dataset(self.record_root, self.camera_name, frame.image.shape[:2], fps, self.emb)
        self.stack.callback(self.writer.close)
        have = self.writer.num_episodes
        log.info("recording each trial into %s%s", self.record_root,
                 f" (adding to its {have} episodes)" if have else "")

    def close(self) -> None:
        self.stack.close()

    # -- recording ----------------------------------------------------------------------------
    def start_recording(self, loop: ControlLoop, instruction: str) -> TrialRecorder | None:
        if self.writer is None:
            return None
        from lara_g1.robot.recording import TrialRecorder

        self.recorder = TrialRecorder(self.writer, loop, self.camera_name, instruction).start()
        return self.recorder

    def save_recording(self, rec: TrialRecorder | None, metadata: dict[str, Any]) -> int | None:
        """Save the trial's episode with ``metadata`` (None: not recorded, or nothing to keep)."""
        if rec is None:
            return None
        rec.finish()
        self.recorder = None
        body = {"run_id": self.run_id, "task": self.task.name, "sim": bool(self.args.sim),
                "server": self.args.server, **{k: self.status_extra.get(k) for k in ("model", "engine")},
                **metadata}
        try:
            index = rec.save(body)
        except Exception as exc:  # noqa: BLE001 - a lost recording must not end an evaluation
            log.error("saving the trial into %s failed: %s", self.record_root, exc)
            rec.discard()
            return None
        if index is None:
            if rec.error is not None:
                log.error("the trial was not recorded: %s", rec.error)
            return None
        print(f"  saved as episode {index} of {self.record_root} ({rec.frames} frames)")
        return index

    def camera_frame(self) -> np.ndarray | None:
        """The newest frame of the running trial's camera stream (None when none)."""
        frame = self.current.latest_frame() if self.current is not None else None
        return None if frame is None else np.asarray(frame.image)

    def infer_fn(self, instruction: str) -> Callable[[Observation], np.ndarray]:
        deadline_ms = 1000.0 * self.horizon / self.config.scheduler.policy_hz
        dim = self.emb.dim

        def infer(obs: Observation) -> np.ndarray:
            actions = self.client.infer(obs.state, obs.images, instruction=instruction,
                                        deadline_ms=deadline_ms).actions
            if actions.ndim != 2 or actions.shape[1] != dim:
                raise ControlError(f"the server sent actions of shape {actions.shape}, expected [H, {dim}]")
            return actions

        return infer

    def new_loop(self, instruction: str) -> ControlLoop:
        # a recorder samples frames by time, a second or two behind the policy
        keep = 2 * max(1, round(self.config.scheduler.policy_hz)) if self.writer is not None else 1
        self.current = ControlLoop(self.robot, self.camera, self.infer_fn(instruction), self.emb, self.config,
                                   camera_name=self.camera_name, estop=self.estop, keep_frames=keep)
        return self.current

    def status(self) -> dict[str, Any]:
        loop = self.current
        body = loop.status() if loop is not None else {"phase": "idle"}
        body.update(self.status_extra)
        rec = self.recorder
        body["recording"] = None if self.writer is None else {
            "dataset": str(self.record_root), "episodes_saved": self.writer.num_episodes,
            "frames": None if rec is None else rec.frames}
        return body


def _record_root(args: argparse.Namespace) -> Path | None:
    """Where the trials are recorded: --record DIR; for eval by default OUT/dataset; None: off."""
    if getattr(args, "no_record", False):
        return None
    if getattr(args, "record", None) is not None:
        return args.record
    return args.out / "dataset" if args.command == "eval" else None


def _camera_config(path: str | None) -> dict[str, Any]:
    """The real robot's camera section: a YAML mapping for robot.cameras.make_camera; default the D455."""
    if path is None:
        return {"type": "realsense"}
    return dict(vars(load_config(CameraConfig, path, kind="camera config")))


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ControlError(f"cannot read --token-file {path}: {exc.strerror}") from None
    if not token:
        raise ControlError(f"--token-file {path} is empty")
    return token


@contextlib.contextmanager
def _signals_estop(session: Session):
    """SIGINT and SIGTERM trigger the e-stop (a fade-out), instead of killing the process.

    Before the first control loop exists nothing has been commanded, so they abort the start-up
    (KeyboardInterrupt) instead of waiting for it to finish.
    """
    estop = session.estop

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        first = not estop.triggered
        estop.trigger(EStopSource(name))
        if session.current is None:
            if first:   # once: a second signal must not interrupt the clean-up of the first
                raise KeyboardInterrupt(name)
            return
        log.warning("%s: e-stop, fading out", name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _dashboard(spec: str, session: Session):
    if spec.lower() == "off":
        yield None
        return
    from lara_g1.robot.dashboard import RobotDashboard
    from lara_g1.runtime.dashboard.http import parse_hostport

    host, port = parse_hostport(spec)
    dash = RobotDashboard(session.status, session.estop.trigger, host, port, live=lambda: session.current,
                          camera=session.camera_frame, dataset=session.record_root,
                          embodiment=session.emb).start()
    log.info("status page at %s", dash.url)
    try:
        yield dash
    finally:
        dash.stop()


def _print_run(result: RunResult) -> None:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    by = f" ({result.estop})" if result.reason is StopReason.ESTOP and result.estop is not None else ""
    print(f"run ended: {result.reason}{by} after {result.duration_s:.1f} s, {result.ticks} commands")
    print(f"control period p50/p99: {ms(result.period_ms_p50)} / {ms(result.period_ms_p99)} ms")
    print(f"frame->command latency p50/p99: {ms(result.e2e_ms_p50)} / {ms(result.e2e_ms_p99)} ms")
    print(f"infer round trip p50/p99: {ms(result.infer_rtt_ms_p50)} / {ms(result.infer_rtt_ms_p99)} ms")
    s = result.scheduler
    print(f"chunks: {s['chunks']} used, {s['chunks_dropped']} dropped stale, {s['actions_dropped']} stale actions "
          f"dropped; chunk latency p50/p99 {ms(s['chunk_latency_ms_p50'])} / {ms(s['chunk_latency_ms_p99'])} ms")
    print(f"safety interventions: {result.interventions or 'none'}")
    if result.request_errors:
        print(f"request errors: {result.request_errors}")


# ---------------------------------------------------------------------------------------------
def _result_metadata(result: RunResult) -> dict[str, Any]:
    """What a trial's episode metadata takes from its RunResult."""
    return {"end_reason": str(result.reason), "estop": None if result.estop is None else str(result.estop),
            "duration_s": round(result.duration_s, 3), "interventions": result.interventions,
            "numbers": {k: v for k, v in _trial_numbers(result).items() if k != "interventions"},
            "request_errors": result.request_errors}


def _error_metadata(loop: ControlLoop, exc: BaseException) -> dict[str, Any]:
    """The episode metadata of a trial that an error ended."""
    return {"outcome": "error", "error": f"{type(exc).__name__}: {exc}",
            "interventions": loop.filter.interventions if loop.filter is not None else {}}


def cmd_run(args: argparse.Namespace, session: Session) -> int:
    instruction = args.instruction or session.task.instruction
    if session.sim_control is not None:
        session.sim_control.reset(session.task.name, args.seed)
    loop = session.new_loop(instruction)
    rec = session.start_recording(loop, instruction)
    base = {"command": "run", "instruction": instruction, "scene_seed": args.seed if args.sim else None}
    try:
        with KeyboardEStop(session.estop):
            result = loop.run(args.duration)
    except BaseException as exc:
        session.save_recording(rec, {**base, **_error_metadata(loop, exc)})
        raise
    _print_run(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    # The end of --duration and an operator's Ctrl-C/SIGTERM are normal ends; the watchdog is not.
    ok = result.reason is StopReason.END_OF_DURATION or (
        result.reason is StopReason.ESTOP and result.estop in (EStopSource.SIGINT, EStopSource.SIGTERM))
    session.save_recording(rec, {**base, "outcome": "ended" if ok else "stopped", **_result_metadata(result)})
    return 0 if ok else 1


def _sim_trial(session: Session, loop: ControlLoop, duration: float
               ) -> tuple[dict[str, bool], RunResult, dict[str, Any]]:
    """One sim trial: stages latched from SimControl.status(); stops at full success.

    Also returns when each stage was first seen (``stage_s``, seconds from the trial's start) and
    where the task's objects were at its end (``objects_end``, world frame, m): what tells a
    failed trial's story (dropped beside the basket, never grasped, ...)."""
    stages = dict.fromkeys(session.task.stages, False)
    reached: dict[str, float] = {}
    last: dict[str, Any] = {}
    stop = threading.Event()
    done = threading.Event()
    t0 = time.monotonic()

    def monitor() -> None:
        while not done.is_set():
            try:
                status = session.sim_control.status()
            except Exception as exc:  # noqa: BLE001 - a missed poll is retried; the trial goes on
                log.warning("sim status failed: %s", exc)
            else:
                last["objects"] = status.get("objects")
                for name, ok in (status.get("stages") or {}).items():
                    if name in stages and ok:
                        stages[name] = True
                        reached.setdefault(name, round(time.monotonic() - t0, 2))
                if stages[FULL]:
                    stop.set()
            done.wait(0.1)

    t = threading.Thread(target=monitor, name="sim-stages", daemon=True)
    t.start()
    try:
        with KeyboardEStop(session.estop):
            result = loop.run(duration, stop)
    finally:
        done.set()
        t.join(2.0)
    if stages[FULL]:
        for s in stages:   # full success implies every stage, even if a poll missed one
            stages[s] = True
    objects = {name: [round(float(v), 3) for v in obj["pos"]]
               for name, obj in (last.get("objects") or {}).items() if isinstance(obj, dict) and "pos" in obj}
    return stages, result, {"stage_s": reached, "objects_end": objects, "_t0": t0}


def _operator_trial(session: Session, loop: ControlLoop, duration: float
                    ) -> tuple[dict[str, bool], RunResult, dict[str, Any]]:
    with KeyboardEStop(session.estop):
        result = loop.run(duration)
    if session.estop.triggered:          # the trial is not counted: nothing to score
        return dict.fromkeys(session.task.stages, False), result, {}
    return ask_stages(session.task, ask_yes_no), result, {}


def _trial_numbers(result: RunResult) -> dict[str, Any]:
    """What a trial's control loop measured, kept per trial in metrics.json."""
    keys = ("ticks", "period_ms_p50", "period_ms_p99", "e2e_ms_p50", "e2e_ms_p99", "infer_rtt_ms_p50",
            "infer_rtt_ms_p99")
    numbers: dict[str, Any] = {k: getattr(result, k) for k in keys}
    numbers["chunks"] = result.scheduler.get("chunks", 0)
    numbers["chunks_dropped"] = result.scheduler.get("chunks_dropped", 0)
    numbers["interventions"] = result.interventions
    return numbers


def cmd_eval(args: argparse.Namespace, session: Session) -> int:
    task = session.task
    instruction = args.instruction or task.instruction
    duration = args.trial_s or task.trial_s
    records: list[TrialRecord] = []
    aborted = None
    for i in range(args.trials):
        if session.estop.triggered:
            aborted = f"e-stop ({session.estop.describe()})"
            break
        print(f"trial {i + 1}/{args.trials}")
        session.status_extra["trial"] = f"{i + 1}/{args.trials}"
        session.client.reset()
        if session.sim_control is not None:
            session.sim_control.reset(task.name, args.seed + i)
        else:
            input("  reset the scene, then press Enter to start the trial ")
        loop = session.new_loop(instruction)
        t0 = time.monotonic()
        trial = _sim_trial if session.sim_control is not None else _operator_trial
        rec = session.start_recording(loop, instruction)
        base = {"command": "eval", "trial": i, "trials": args.trials, "instruction": instruction,
                "scene_seed": args.seed + i if args.sim else None}
        try:
            stages, result, observed = trial(session, loop, duration)
        except BaseException as exc:
            session.save_recording(rec, {**base, **_error_metadata(loop, exc)})
            raise
        t_trial = observed.pop("_t0", t0)
        counted = not session.estop.triggered
        meta = {**base, "counted": counted, "stages": stages, "success": bool(stages.get(FULL)) and counted,
                "outcome": ("success" if stages.get(FULL) else "failure") if counted else "aborted",
                **_result_metadata(result), **observed}
        if rec is not None and rec.t0 is not None and "stage_s" in observed:
            # when each stage was reached, in the episode's (video's) time
            meta["stage_video_s"] = {k: round(v - (rec.t0 - t_trial), 2) for k, v in observed["stage_s"].items()}
        episode = session.save_recording(rec, meta)
        if not counted:
            aborted = f"e-stop ({session.estop.describe()}) during trial {i + 1}; that trial is not counted"
            break
        extra = {**_trial_numbers(result), **observed}
        if episode is not None:
            extra["episode_index"] = episode
        records.append(TrialRecord(i, stages, result.reason, time.monotonic() - t0, extra))
        print("  " + ", ".join(f"{k}={'y' if v else 'n'}" for k, v in stages.items()))
    if not records:
        print(f"lara-robot eval: no completed trials ({aborted})", file=sys.stderr)
        return 1
    info = {"server": args.server, "sim": args.sim, "seed": args.seed, "trial_s": duration,
            "instruction": instruction, "aborted": aborted, **{k: v for k, v in session.status_extra.items()
                                                              if k in ("model", "engine")},
            "dataset": None if session.writer is None else str(session.record_root), "run_id": session.run_id}
    summary = write_results(args.out, task, records, info)
    print(format_table(summary))
    print(f"results in {args.out}/metrics.json, trials.csv, metrics.csv")
    if session.writer is not None:
        print(f"trials recorded in {session.record_root} (review: lara-robot review {session.record_root})")
    if aborted:
        print(f"stopped early: {aborted}", file=sys.stderr)
        return 1
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """Serve the review page of a trial dataset until Ctrl-C/SIGTERM."""
    from lara_g1.lara.data.format import INFO_PATH
    from lara_g1.robot.dashboard import RobotDashboard
    from lara_g1.runtime.dashboard.http import parse_hostport

    if not (args.dataset / INFO_PATH).is_file():
        print(f"lara-robot: {args.dataset} holds no dataset ({INFO_PATH} missing)", file=sys.stderr)
        return 2
    try:
        host, port = parse_hostport(args.dashboard)
        dash = RobotDashboard(lambda: {"phase": "idle", "note": "reviewing a dataset"}, lambda _source: None,
                              host, port, dataset=args.dataset, embodiment=load_embodiment("g1")).start()
    except (ValueError, OSError) as exc:
        print(f"lara-robot: {exc}", file=sys.stderr)
        return 2
    print(f"review of {args.dataset} at {dash.url}/review (Ctrl-C to stop)", flush=True)
    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        dash.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "review":
        return cmd_review(args)
    if args.sim_running and not args.sim:
        print("lara-robot: --sim-running needs --sim", file=sys.stderr)
        return 2
    if args.command == "eval" and args.trials < 1:
        print("lara-robot: --trials must be >= 1", file=sys.stderr)
        return 2
    if args.command == "eval" and not args.sim and not sys.stdin.isatty():
        print("lara-robot: on the robot the operator scores each stage (y/n) on the terminal, but stdin is "
              "not a terminal; run it interactively, or use --sim for automatic scoring", file=sys.stderr)
        return 2
    if args.domain is not None and not 0 <= args.domain <= 232:
        print(f"lara-robot: --domain must be within 0..232, got {args.domain}", file=sys.stderr)
        return 2
    if args.command == "check":
        from lara_g1.core.errors import ConfigError, LaraError
        from lara_g1.robot.preflight import run_check

        if args.window <= 0 or args.infer_calls < 1:
            print("lara-robot: --window must be > 0 and --infer-calls >= 1", file=sys.stderr)
            return 2
        try:
            return run_check(args)
        except ConfigError as exc:
            print(f"lara-robot: {exc}", file=sys.stderr)
            return 2
        except (LaraError, OSError) as exc:
            print(f"lara-robot: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("lara-robot: check interrupted", file=sys.stderr)
            return 130
    try:
        config = ControlConfig.load(args.config)
        task = load_tasks()[args.task]
        embodiment = load_embodiment("g1")
        config.safety.max_step(embodiment)      # the rates name every joint group
    except (ControlError, EvaluationError, SafetyConfigError) as exc:
        print(f"lara-robot: {exc}", file=sys.stderr)
        return 2
    estop = EStop()
    session = Session(args, embodiment, config, task, estop)
    with _signals_estop(session):
        try:
            session.open()
            with _dashboard(args.dashboard, session):
                return cmd_run(args, session) if args.command == "run" else cmd_eval(args, session)
        except (ControlError, SafetyError, EvaluationError, RecordingError, OSError, TimeoutError, EOFError) as exc:
            print(f"lara-robot: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("lara-robot: interrupted during start-up; nothing was commanded", file=sys.stderr)
            return 130
        finally:
            session.close()


if __name__ == "__main__":
    sys.exit(main())
