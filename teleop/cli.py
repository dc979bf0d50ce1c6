"""``lara-teleop``: record teleoperated demonstrations, replay them, validate datasets.

  lara-teleop record --task pour --episodes 50 --out DIR [--source avp|replay:FILE|synthetic|expert|explore]
                     [--robot g1|sim] [--episode-time S] [--resume] [--discard-failed] [--report FILE]
  lara-teleop replay DIR --episode K [--robot sim|g1]
  lara-teleop validate DIR

Every robot command goes through robot.safety.SafetyFilter (settings: configs/control/default.yaml).
``--source expert --robot sim`` is the scripted expert (teleop.sources.expert): it reads the
simulated scene's object poses and operates the robot through the same retargeting, safety filter
and recorder; with the simulated G1 every episode is scored by the sim's stage detectors.
``--source explore`` plays no task (random reaches around the objects): action-free video for the
LAM's stage 1, recorded under its own instruction, never the task's.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

import numpy as np

from lara_g1.core.errors import LaraError

log = logging.getLogger("lara-teleop")

SIM_DOMAIN = 1   # Unitree's simulator convention (docs/ROBOT.md, "Domains")


class CliError(LaraError, RuntimeError):
    pass


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"width and height must be positive and even, got {text!r}")
    return h, w


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lara-teleop", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    def robot_args(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("--robot", choices=["g1", "sim"], default=default,
                        help="the real G1 over DDS, or a simulated G1 started here (lara-sim)")
        sp.add_argument("--robot-config", help="robot YAML (default: configs/robot/g1_real.yaml or g1_sim.yaml)")
        sp.add_argument("--domain", type=int, help=f"DDS domain id (default: {SIM_DOMAIN} with --robot sim, "
                                                   "the robot config's otherwise)")
        sp.add_argument("--control-config", default="default",
                        help="safety settings: a configs/control name or YAML path (default: default)")

    rec = sub.add_parser("record", help="record teleoperated episodes into a LeRobot v3.0 dataset")
    rec.add_argument("--task", required=True,
                     help="task name from configs/control/tasks.yaml (pick_place, pour) or an instruction")
    rec.add_argument("--episodes", type=int, required=True, help="episodes to record")
    rec.add_argument("--out", required=True, type=Path, help="dataset directory")
    rec.add_argument("--source", default="avp",
                     help="avp (default), replay:FILE (.npz), synthetic, expert (the scripted expert, --robot sim), "
                          "or explore (scripted random reaches around the task's objects, --robot sim: "
                          "action-free video for the LAM's stage 1)")
    rec.add_argument("--avp-ip", help="the Vision Pro's IPv4 address, as the Tracking Streamer app shows it "
                                      "(host names, localhost and IPv6 are refused: avp-stream would take "
                                      "them for a cross-network room code)")
    robot_args(rec, "g1")
    rec.add_argument("--camera-config", help="YAML camera section for the real robot (default: a D455)")
    rec.add_argument("--camera", default="head", help="camera name in the dataset (default: head)")
    rec.add_argument("--render", type=_size, default=(224, 224),
                     help="simulated camera size WIDTHxHEIGHT (default 224x224)")
    rec.add_argument("--fps", type=int, default=30, help="recording rate (default 30)")
    rec.add_argument("--video-preset", default="veryfast",
                     help="x264 preset (ultrafast .. medium): faster presets cost less CPU per frame")
    rec.add_argument("--episode-time", type=float, help="seconds per episode (needed without a terminal)")
    rec.add_argument("--reset-time", type=float, default=5.0, help="reset phase between episodes (s)")
    rec.add_argument("--resume", action="store_true", help="add episodes to an existing dataset")
    rec.add_argument("--calibrate-hands", action="store_true",
                     help="also capture the operator's open hands and fists (needs a terminal)")
    rec.add_argument("--record-tracking", type=Path, help="also save the raw tracking stream (.npz)")
    rec.add_argument("--seed", type=int, default=0,
                     help="synthetic operator seed; the sim scene of the k-th attempt uses seed + k")
    rec.add_argument("--discard-failed", action="store_true",
                     help="with --robot sim: discard episodes whose task did not reach Full (and move on "
                          "to a new scene) instead of saving them")
    rec.add_argument("--report", type=Path,
                     help="write the session's per-episode report (with --robot sim: stage success) as JSON")

    rep = sub.add_parser("replay", help="play a recorded episode back through the safety filter")
    rep.add_argument("dataset", type=Path)
    rep.add_argument("--episode", type=int, required=True)
    robot_args(rep, "sim")
    rep.add_argument("--task", help="sim scene (default: the task whose instruction the episode has)")

    val = sub.add_parser("validate", help="check a dataset and list every problem")
    val.add_argument("dataset", type=Path)
    return ap


# ----------------------------------------------------------------------------- shared set-up
def _resolve_task(name: str) -> tuple[str | None, str]:
    """(sim scene name or None, instruction) for a --task value."""
    from lara_g1.robot.evaluation import load_tasks
    tasks = load_tasks()
    if name in tasks:
        return name, tasks[name].instruction
    for t in tasks.values():
        if t.instruction == name:
            return t.name, t.instruction
    return None, name


def _open_robot(args, stack: contextlib.ExitStack, scene: str | None, render: tuple[int, int] | None,
                fps: float, seed: int = 0):
    """Start the sim if asked, connect the G1 driver; returns (robot, config, sim_control)."""
    from lara_g1.robot.g1 import G1Config, G1Robot
    sim_control = None
    if args.robot == "sim":
        if scene is None:
            raise CliError("--robot sim needs a task the simulator knows (pick_place, pour)")
        from lara_g1.robot.sim.control import SimControl
        from lara_g1.robot.sim.process import SimProcess
        domain = SIM_DOMAIN if args.domain is None else args.domain
        log.info("starting lara-sim (%s) on DDS domain %d", scene, domain)
        stack.enter_context(SimProcess(scene, domain_id=domain, render_size=render, seed=seed,
                                       camera_fps=fps))
        sim_control = SimControl(domain)
        cfg = G1Config.load(args.robot_config or "sim").replace(domain_id=domain)
    else:
        cfg = G1Config.load(args.robot_config or "real")
        if args.domain is not None:
            cfg = cfg.replace(domain_id=args.domain)
    robot = G1Robot(cfg)
    robot.connect()
    stack.callback(robot.disconnect)
    return robot, cfg, sim_control


def _safety(args, robot):
    from lara_g1.core.embodiment import load_embodiment
    from lara_g1.robot.control import ControlConfig
    from lara_g1.robot.safety import SafetyFilter
    control = ControlConfig.load(args.control_config)
    return SafetyFilter(load_embodiment("g1"), control.safety, robot), control.safety


# ----------------------------------------------------------------------------- record
def cmd_record(args) -> int:
    from lara_g1.teleop.keys import RecordKeys
    from lara_g1.teleop.retarget.retargeter import RetargetConfig, Retargeter
    from lara_g1.teleop.session import Progress, RecordSession, SessionConfig, SessionOutcome
    from lara_g1.teleop.sources import TrackingRecorder, make_source

    if args.episodes < 1:
        raise CliError("--episodes must be at least 1")
    if args.episode_time is not None and args.episode_time <= 0:
        raise CliError("--episode-time must be > 0")
    if args.reset_time < 0:
        raise CliError("--reset-time must be >= 0")
    interactive = RecordKeys.interactive()
    scripted = args.source in ("synthetic", "expert", "explore") or args.source.startswith("replay:")
    if not interactive and args.episode_time is None and not scripted:
        raise CliError("standard input is not a terminal, so nobody can press next: give "
                       "--episode-time S for unattended recording")
    if args.calibrate_hands and not interactive:
        raise CliError("--calibrate-hands needs a terminal (the operator confirms each hand pose)")
    if args.source == "avp":           # before anything starts: an address avp-stream would misread
        from lara_g1.teleop.sources.avp import validate_ip
        validate_ip(args.avp_ip)
    from lara_g1.lara.data import format as fmt
    if not args.resume and args.out.exists() and (not args.out.is_dir() or any(
            p.name != fmt.PARTIAL_DIR for p in args.out.iterdir())):
        raise CliError(f"{args.out} exists and is not empty: pass --resume to add episodes to it, "
                       "or choose a new --out")
    scene, instruction = _resolve_task(args.task)
    if args.source in ("expert", "explore") and (args.robot != "sim" or scene is None):
        raise CliError(f"--source {args.source} drives the simulated G1 only: give --robot sim and a simulator task "
                       "(pick_place, pour)")
    if args.source == "explore":
        if args.discard_failed:
            raise CliError("--source explore plays no task, so nothing can fail: drop --discard-failed")
        from lara_g1.teleop.sources.expert import explore_instruction
        instruction = explore_instruction(scene)
    if args.discard_failed and args.robot != "sim":
        raise CliError("--discard-failed needs --robot sim (the simulator scores the episodes)")
    progress = Progress()
    root = logging.getLogger()
    for handler in list(root.handlers):   # log lines go above the status line, not through it
        root.removeHandler(handler)
    root.addHandler(progress.log_handler())
    recorder = TrackingRecorder(args.record_tracking) if args.record_tracking else None
    retarget_cfg = RetargetConfig.load()

    with contextlib.ExitStack() as stack:
        # The operator's tracking first: no robot is started for a headset that is not there.
        if args.source in ("expert", "explore"):
            from lara_g1.teleop.sources.expert import ExpertSource
            # sim_control exists (below) before the first episode asks for the scene
            source = ExpertSource(scene, lambda: sim_control.status()["objects"],
                                  retargeter=Retargeter(config=retarget_cfg),
                                  motion="task" if args.source == "expert" else "explore", seed=args.seed)
        else:
            source = make_source(args.source, avp_ip=args.avp_ip, episode_s=args.episode_time, seed=args.seed)
        source.connect()
        stack.callback(source.close)
        robot, robot_cfg, sim_control = _open_robot(args, stack, scene, args.render, float(args.fps), args.seed)
        if args.robot == "g1":   # the pre-flight's fast subset (lara-robot check runs every check)
            from lara_g1.core.embodiment import load_embodiment
            from lara_g1.robot import preflight
            refused = preflight.refusal(preflight.fast_checks(robot_cfg, load_embodiment(robot_cfg.embodiment)))
            if refused:
                raise CliError(refused)
        if args.robot == "sim":
            from lara_g1.robot.cameras import SimCamera
            camera = SimCamera(robot_cfg.domain_id)
        else:
            from lara_g1.robot.cameras import make_camera
            from lara_g1.robot.cli import _camera_config
            camera = make_camera(_camera_config(args.camera_config))
        camera.connect()
        stack.callback(camera.disconnect)
        safety, safety_cfg = _safety(args, robot)

        def writer_factory(hw: tuple[int, int]):
            from lara_g1.lara.data.writer import LeRobotWriter
            writer = LeRobotWriter(args.out, fps=args.fps, cameras={args.camera: hw}, resume=args.resume,
                                   preset=args.video_preset)
            stack.callback(writer.close)
            return writer

        seeds: list[int] = []          # the sim scene seed of every attempt, in order

        def on_reset(episode: int) -> None:
            if sim_control is not None:
                seeds.append(args.seed + len(seeds))
                sim_control.reset(scene, seed=seeds[-1])

        def judge() -> dict:
            return sim_control.status()["stages"]

        session = RecordSession(
            SessionConfig(task=instruction, episodes=args.episodes, fps=args.fps, camera=args.camera,
                          episode_time_s=args.episode_time, reset_time_s=args.reset_time,
                          interactive=interactive, calibrate_hands=args.calibrate_hands,
                          discard_failed=args.discard_failed),
            source, Retargeter(config=retarget_cfg), safety, robot, camera, writer_factory,
            command_hz=safety_cfg.command_hz, tracking_timeout_s=retarget_cfg.tracking_timeout_s,
            tracking_recorder=recorder, on_reset=on_reset, progress=progress,
            judge=judge if sim_control is not None else None)
        try:
            report = session.run()
        except BaseException as exc:
            if args.report:    # what was saved before the failure is reported (and kept on disk)
                write_report(args.report, args, session.report, seeds, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if recorder is not None and len(recorder):
                print(f"tracking stream saved to {recorder.save()} ({len(recorder)} samples)")
    frames = sum(e.frames for e in report.episodes)
    dropped = [e.dropped for e in report.episodes]
    cpu = [e.cpu_load for e in report.episodes]
    print(f"recorded {len(report.episodes)} episode(s), {frames} frames into {args.out}"
          + (f"; dropped frames per episode {dropped}, recorder process CPU "
             f"{100 * float(np.mean(cpu)):.0f}% of one core" if report.episodes else "")
          + (f"; {report.rerecorded} re-recorded" if report.rerecorded else "")
          + (f"; ended: {report.outcome}" if report.outcome is not SessionOutcome.COMPLETE else ""))
    judged = [e for e in report.attempts if e.stages is not None]
    if judged:
        rates = stage_rates([e.stages for e in judged])
        print(f"task stages over {len(judged)} attempt(s) (the simulator's detectors): "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in rates.items())
              + (f"; {len(report.failed)} failed attempt(s) discarded" if args.discard_failed else ""))
    if report.interventions:
        print(f"safety interventions: {report.interventions}")
    if args.report:
        write_report(args.report, args, report, seeds)
    return 0


def stage_rates(stages: list[dict]) -> dict[str, float]:
    """Fraction of attempts that reached each stage."""
    return {name: sum(bool(s.get(name)) for s in stages) / len(stages) for name in stages[0]}


def write_report(path: Path, args, report, seeds: list[int], error: str | None = None) -> None:
    """The session as JSON: settings, how it ended (``outcome``, a
    :class:`lara_g1.teleop.session.SessionOutcome` value), every attempt (saved or discarded) in
    order, stage rates, and the error that ended the session early, if one did."""
    import dataclasses
    import json

    attempts = report.attempts
    body = {"task": args.task, "source": args.source, "robot": args.robot, "out": str(args.out),
            "episodes_saved": len(report.episodes), "failed_discarded": len(report.failed),
            "rerecorded": report.rerecorded, "outcome": report.outcome.value,
            "scene_seeds": seeds,    # one per reset: the scene of attempt k is seeds[k]
            "interventions": report.interventions, "error": error,
            "attempts": [dataclasses.asdict(e) for e in attempts]}
    judged = [e.stages for e in attempts if e.stages is not None]
    if judged:
        body["stage_rates"] = stage_rates(judged)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1) + "\n")


# ----------------------------------------------------------------------------- replay
def cmd_replay(args) -> int:
    from lara_g1.lara.data.lerobot import LeRobotDataset
    from lara_g1.robot.safety import Phase

    ds = LeRobotDataset(args.dataset)
    if not 0 <= args.episode < ds.num_episodes:
        raise CliError(f"{args.dataset}: episode {args.episode} does not exist ({ds.num_episodes} episodes)")
    ep = ds.episode(args.episode)
    fps = float(ds.info["fps"])
    scene = None
    if args.robot == "sim":
        scene, _ = _resolve_task(args.task or ep.task)
        if scene is None:
            raise CliError(f"episode {args.episode}'s task {ep.task!r} is no simulator scene: pass --task")
    with contextlib.ExitStack() as stack:
        robot, _, _ = _open_robot(args, stack, scene, None, fps)
        safety, cfg = _safety(args, robot)
        deadline = time.monotonic() + 15.0
        while (state := robot.read_state()) is None:
            if time.monotonic() > deadline:
                raise CliError("no robot state within 15 s")
            time.sleep(0.01)
        period = 1.0 / cfg.command_hz
        with safety:
            safety.start(state.q)
            print(f"replaying episode {args.episode} ({ep.length} frames, {ep.length / fps:.1f} s, "
                  f"task {ep.task!r}) on the {args.robot}: ramping in to its first frame")
            next_t = time.monotonic()
            t_play = None
            while True:
                now = time.monotonic()
                if safety.stopped:
                    raise CliError(f"the safety filter faded out: {safety.fade_detail}")
                if t_play is None and safety.phase is Phase.RUN:
                    t_play = now
                i = 0 if t_play is None else int((now - t_play) * fps)
                if i >= ep.length:
                    break
                safety.step(ep.actions[i], now)
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
            final = robot.read_state()
            err = np.abs(final.q - ep.actions[-1]) if final is not None else None
        print(f"replayed {ep.length} frames; safety interventions {safety.interventions or 'none'}"
              + (f"; final pose error max {float(err[:14].max()):.3f} rad (arms)" if err is not None else ""))
    return 0


# ----------------------------------------------------------------------------- main
def _terminate(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C: every exit path fades the arms out and keeps saved episodes."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "domain", None) is not None and not 0 <= args.domain <= 232:
        print(f"lara-teleop: --domain must be within 0..232, got {args.domain}", file=sys.stderr)
        return 2
    if args.command == "validate":
        from lara_g1.lara.data.validate import main as validate_main
        return validate_main([str(args.dataset)])
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C stops a recording cleanly even when the process started with SIGINT ignored, as a
    # background job of a script does (Python then installs no KeyboardInterrupt handler, and a
    # SIGINT from lara-loop or the operator would be lost).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return cmd_record(args) if args.command == "record" else cmd_replay(args)
    except KeyboardInterrupt:
        print("lara-teleop: interrupted; the arms were faded out, saved episodes are kept "
              "(the one in progress was discarded)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line for every expected failure
        if args.verbose:
            log.exception("failed")
        print(f"lara-teleop {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
