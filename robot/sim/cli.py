"""``lara-sim``: the simulated G1 as its own process, speaking the robot's DDS topics.

    lara-sim --task pick_place|pour --domain N [--interface lo] [--render 224x224] [--seed S]
             [--no-hands] [--no-head]

Rendering uses MuJoCo's offscreen OpenGL: EGL by default (``MUJOCO_GL=egl``; on a machine
without a GPU, Mesa's software EGL from the Debian packages ``libegl1 libegl-mesa0``), or
``osmesa`` if EGL cannot start. ``--render none`` runs without the camera.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys


def _parse_size(text: str) -> tuple[int, int] | None:
    """'WxH' -> (height, width); 'none' -> None."""
    if text.lower() == "none":
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--render expects WIDTHxHEIGHT (e.g. 224x224) or none, got {text!r}") from None
    if not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"--render size {w}x{h} is out of range")
    return h, w


def _check_gl(size, argv: list[str], chosen_by_user: bool) -> None:
    """Open a GL context before starting. If EGL fails and the user did not pick a backend,
    restart once with OSMesa (the backend is fixed at mujoco's import); otherwise say what is
    missing and stop."""
    try:
        import mujoco  # the GL backend loads here; a missing OSMesa fails at import

        r = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), size[0], size[1])
        r.close()
    except Exception as exc:  # mujoco raises plain Exceptions / FatalError for GL problems
        backend = os.environ.get("MUJOCO_GL")
        if backend == "egl" and not chosen_by_user:
            logging.warning("EGL offscreen rendering failed (%s); restarting with MUJOCO_GL=osmesa", exc)
            os.environ["MUJOCO_GL"] = "osmesa"
            os.environ.pop("PYOPENGL_PLATFORM", None)  # set to egl by the failed import
            os.environ["LARA_SIM_GL_FALLBACK"] = "1"
            os.execv(sys.executable, [sys.executable, "-m", "lara_g1.robot.sim.cli", *argv])
        raise SystemExit(f"lara-sim: cannot render offscreen with MUJOCO_GL={backend}: {exc}. Install the "
                         f"Debian packages libegl1 libegl-mesa0 (EGL) or libosmesa6 (MUJOCO_GL=osmesa), "
                         f"or run with --render none.") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lara-sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="pick_place", choices=["pick_place", "pour"])
    parser.add_argument("--domain", type=int, default=1, help="DDS domain id (robot convention: sim 1)")
    parser.add_argument("--interface", default="lo", help="network interface for DDS (default lo)")
    parser.add_argument("--render", type=_parse_size, default=(224, 224), help="camera WIDTHxHEIGHT or none")
    parser.add_argument("--camera-fps", type=float, default=15.0)
    parser.add_argument("--state-hz", type=float, default=200.0, help="rt/lowstate rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-hands", action="store_true",
                        help="publish no hand state (as a G1 whose Inspire DFX service is not running)")
    parser.add_argument("--no-head", action="store_true",
                        help="publish no head state (as a G1 whose head-mount controller is not running)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s lara-sim %(levelname)s %(message)s")

    chosen_by_user = "MUJOCO_GL" in os.environ and not os.environ.get("LARA_SIM_GL_FALLBACK")
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.render is not None:
        _check_gl(args.render, sys.argv[1:] if argv is None else list(argv), chosen_by_user)

    from lara_g1.robot.sim.bridge import SimBridge
    from lara_g1.robot.sim.world import SimWorld

    world = SimWorld(args.task, seed=args.seed)
    bridge = SimBridge(world, args.domain, args.interface, render_size=args.render,
                       camera_fps=args.camera_fps, state_hz=args.state_hz, hands=not args.no_hands,
                       head=not args.no_head)
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    signal.signal(signal.SIGINT, lambda *_: bridge.stop())
    logging.info("simulated G1 up: task %s seed %d, DDS domain %d on %s, camera %s", args.task, args.seed,
                 args.domain, args.interface, "off" if args.render is None else f"{args.render[1]}x{args.render[0]}")
    bridge.run(args.duration)
    st = bridge.status()
    logging.info("stopped: %s", {k: st[k] for k in ("stages", "counters", "physics_rate_hz")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
