"""``lara-head``: the head mount's controller, two Dynamixel servos behind the robot's head topics.

    lara-head serve --driver dynamixel --port /dev/ttyUSB0 --ids 1,2   (or --config FILE)
    lara-head calibrate --config FILE [--port /dev/ttyUSB0] [--ids 1,2] [--yes]

``serve`` takes ``lara/head/cmd`` and publishes ``lara/head/state`` (``HeadCmd_``/``HeadState_``,
rad, yaw then pitch) at the control rate, on the DDS domain and interface of the robot config
(``--robot-config``, default the config file's ``robot: real``). The servos start limp; the first
command turns the torque on where the mount stands. Stale commands hold, then turn the torque off
(the arms' watchdog rule and times, configs/control); Ctrl-C and SIGTERM turn it off and exit.

``calibrate`` turns the torque off, waits while you set the mount to its mechanical zero by hand,
reads the raw positions and stores them as the zero offsets in FILE (written atomically; created
from the bundled template if it does not exist).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from lara_g1.core.errors import ConfigError
from lara_g1.core.extras import MissingExtraError
from lara_g1.robot.dds import topics
from lara_g1.robot.head_mount.bus import (
    ADDR_TORQUE_ENABLE,
    SETUP_TRIES,
    DynamixelBus,
    ServoBusError,
    retry,
)
from lara_g1.robot.head_mount.config import (
    HeadMountConfig,
    HeadMountConfigError,
    load_head_config,
    save_head_config,
)
from lara_g1.robot.head_mount.controller import HeadController, HeadMountError, HeadServer

log = logging.getLogger("lara-head")

DEFAULT_CONFIG = "dynamixel"   # configs/head/dynamixel.yaml


def _ids(text: str) -> list[int]:
    try:
        ids = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ids expects comma-separated servo IDs (e.g. 1,2), got {text!r}") from None
    if not ids or any(not 0 <= i <= 252 for i in ids):
        raise argparse.ArgumentTypeError(f"--ids: servo IDs are 0..252, got {text!r}")
    return ids


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lara-head", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--port", help="serial port of the USB-TTL adapter (default: the config's, /dev/ttyUSB0)")
        sp.add_argument("--ids", type=_ids, help="servo IDs in joint order, yaw then pitch (default: the config's, 1,2)")
        sp.add_argument("--baudrate", type=int, help="the servos' baud rate (default: the config's)")
        sp.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    serve = sub.add_parser("serve", help="serve lara/head/cmd and lara/head/state from the servos")
    serve.add_argument("--config", default=DEFAULT_CONFIG,
                       help="head mount config: a name in configs/head or a YAML path (default: dynamixel)")
    serve.add_argument("--driver", default="dynamixel", choices=["dynamixel"], help="servo driver")
    common(serve)
    serve.add_argument("--rate", type=float, help="control and state rate, Hz (default: the config's)")
    serve.add_argument("--robot-config", help="robot config for DDS and the head topics: real, sim or a path "
                       "(default: the config's)")
    serve.add_argument("--domain", type=int, help="DDS domain id (default: the robot config's)")
    serve.add_argument("--interface", help="network interface for DDS (default: the robot config's)")
    serve.add_argument("--duration", type=float, help="stop after this many seconds (default: until stopped)")

    cal = sub.add_parser("calibrate", help="store the zero offsets: the raw positions at the mechanical zero")
    cal.add_argument("--config", required=True, type=Path,
                     help="the YAML file to write (created from the bundled template if missing)")
    common(cal)
    cal.add_argument("--yes", action="store_true", help="do not wait for Enter: the mount is at its zero now")
    cal.add_argument("--samples", type=int, default=10, help="readings averaged per servo (default 10)")
    return p


def _apply_overrides(config: HeadMountConfig, args: argparse.Namespace) -> HeadMountConfig:
    changes = {k: v for k, v in (("port", args.port), ("baudrate", args.baudrate),
                                 ("rate_hz", getattr(args, "rate", None))) if v is not None}
    if changes:
        config = config.replace(**changes)
    if args.ids is not None:
        config = config.with_ids(args.ids)
    return config


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT/SIGTERM set ``stop``: the loop ends and the torque goes off on the way out."""
    def handler(signum, frame):
        log.warning("%s: stopping (torque off)", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def cmd_serve(args: argparse.Namespace) -> int:
    from lara_g1.robot.g1 import G1Config
    from lara_g1.robot.safety import SafetyConfig

    config = _apply_overrides(load_head_config(args.config), args)
    if args.config == DEFAULT_CONFIG:
        log.warning("no --config: zero offsets are the template's (2048, uncalibrated); run "
                    "`lara-head calibrate --config FILE` once and serve with --config FILE")
    safety = SafetyConfig.load(config.control)
    robot = G1Config.load(args.robot_config or config.robot)
    if robot.head.get("driver", "dds") != "dds":
        log.warning("robot config %r has head.driver %r: the robot side will not use this mount",
                    robot.name, robot.head.get("driver"))
    domain = robot.domain_id if args.domain is None else args.domain
    interface = robot.interface if args.interface is None else (args.interface or None)
    stop = threading.Event()
    with _stop_on_signals(stop):
        bus = DynamixelBus(config.port, config.baudrate)
        with HeadController(config, bus, safety) as controller:
            controller.start()
            server = HeadServer(controller, domain, interface, robot.head.get("cmd_topic", topics.HEAD_CMD),
                                robot.head.get("state_topic", topics.HEAD_STATE))
            log.info("serving %s -> servos %s on %s -> %s at %.0f Hz (DDS domain %d, interface %s)",
                     robot.head.get("cmd_topic", topics.HEAD_CMD), config.ids, config.port,
                     robot.head.get("state_topic", topics.HEAD_STATE), controller.rate_hz, domain, interface)
            server.run(stop, args.duration)
            log.info("stopped after %d steps (%d overruns); torque off; interventions: %s",
                     server.steps, server.overruns, dict(controller.counts) or "none")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.samples < 1:
        raise HeadMountConfigError("--samples must be >= 1")
    source = args.config if args.config.exists() else DEFAULT_CONFIG
    config = _apply_overrides(load_head_config(source), args)
    bus = DynamixelBus(config.port, config.baudrate)
    try:
        for j in config.joints:
            try:
                retry(lambda j=j: bus.ping(j.id), SETUP_TRIES)
                retry(lambda j=j: bus.write1(j.id, ADDR_TORQUE_ENABLE, 0), SETUP_TRIES)
            except ServoBusError as exc:
                raise HeadMountError(f"{j.name}: servo ID {j.id} on {config.port} at {config.baudrate} baud: "
                                     f"{exc}. Check the supply, the cables, the ID and the baud rate.") from exc
        if not args.yes:
            print("The torque is off. Move the mount by hand to its mechanical zero (yaw straight ahead, "
                  "pitch level), hold it there and press Enter.", flush=True)
            input()
        readings = []
        for _ in range(args.samples):
            readings.append(retry(lambda: bus.read_positions(config.ids), SETUP_TRIES))
            time.sleep(0.02)
    finally:
        bus.close()
    zeros = []
    for j in config.joints:
        raw = np.array([r[j.id] for r in readings])
        if raw.max() - raw.min() > 8:
            raise HeadMountError(f"{j.name}: the position moved during the readings ({raw.min()}..{raw.max()} "
                                 f"ticks); hold the mount still and calibrate again")
        zeros.append(int(round(float(np.median(raw)))) % 4096)
    try:
        calibrated = config.with_zero_ticks(zeros)
    except HeadMountConfigError as exc:
        raise HeadMountConfigError(f"the measured zero does not fit the joint limits: {exc}") from None
    save_head_config(calibrated, args.config)
    for j in calibrated.joints:
        lo, hi = sorted(j.limit_ticks())
        print(f"{j.name}: servo ID {j.id}, zero at {j.zero_ticks} ticks; limits [{j.lower}, {j.upper}] rad "
              f"= ticks {lo}..{hi}")
    print(f"stored in {args.config}; serve with: lara-head serve --config {args.config}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "domain", None) is not None and not 0 <= args.domain <= 232:
        print(f"lara-head: --domain must be within 0..232, got {args.domain}", file=sys.stderr)
        return 2
    try:
        return cmd_serve(args) if args.command == "serve" else cmd_calibrate(args)
    except (ConfigError, MissingExtraError, HeadMountError, ServoBusError, OSError) as exc:
        print(f"lara-head: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("lara-head: interrupted; the torque is off", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
