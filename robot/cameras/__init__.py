"""Cameras behind one interface: the D455 (RealSense), the simulated head camera, replay.

``make_camera({"type": "realsense"|"sim"|"replay", ...})`` builds one from a config section.
"""
from __future__ import annotations

from lara_g1.robot.cameras.base import Camera, CameraError, Frame
from lara_g1.robot.cameras.realsense import RealSenseCamera
from lara_g1.robot.cameras.replay import ReplayCamera
from lara_g1.robot.cameras.sim import SimCamera

__all__ = ["Camera", "CameraError", "Frame", "RealSenseCamera", "ReplayCamera", "SimCamera", "make_camera"]


def make_camera(config: dict) -> Camera:
    """``type: realsense`` (serial, width, height, fps, recording), ``sim`` (domain_id,
    interface), ``replay`` (source, camera, episode, realtime, loop)."""
    cfg = dict(config)
    kind = cfg.pop("type", None)
    if kind == "realsense":
        return RealSenseCamera(cfg)
    if kind == "sim":
        if "domain_id" not in cfg:
            raise ValueError("a sim camera needs domain_id")
        return SimCamera(int(cfg["domain_id"]), cfg.get("interface", "lo"))
    if kind == "replay":
        if "source" not in cfg:
            raise ValueError("a replay camera needs source (a LeRobot dataset dir or a .db3/.bag)")
        return ReplayCamera(cfg["source"], cfg.get("camera", "head"), int(cfg.get("episode", 0)),
                            bool(cfg.get("realtime", True)), bool(cfg.get("loop", True)))
    raise ValueError(f"camera type must be realsense, sim or replay, got {kind!r}")
