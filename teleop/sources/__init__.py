"""Operator tracking sources behind one interface (:class:`TrackingSource`).

``make_source("avp" | "replay:FILE" | "synthetic", ...)`` builds one from the CLI's ``--source``.
"""
from __future__ import annotations

from lara_g1.teleop.sources.base import TrackingError, TrackingLost, TrackingSample, TrackingSource
from lara_g1.teleop.sources.replay import ReplaySource, TrackingRecorder, load_tracking_file
from lara_g1.teleop.sources.synthetic import SyntheticSource

__all__ = ["TrackingError", "TrackingLost", "TrackingSample", "TrackingSource", "ReplaySource",
           "TrackingRecorder", "SyntheticSource", "load_tracking_file", "make_source"]


def make_source(spec: str, *, avp_ip: str | None = None, episode_s: float | None = None,
                seed: int = 0) -> TrackingSource:
    """``avp`` (needs ``avp_ip``), ``replay:FILE`` or ``synthetic`` (episodes of ``episode_s``)."""
    if spec == "avp":
        from lara_g1.teleop.sources.avp import AvpSource
        return AvpSource(avp_ip or "")
    if spec.startswith("replay:"):
        path = spec[len("replay:"):]
        if not path:
            raise TrackingError("--source replay:FILE needs a tracking file (.npz)")
        return ReplaySource(path)
    if spec == "synthetic":
        return SyntheticSource(episode_s=episode_s, seed=seed)
    raise TrackingError(f"unknown tracking source {spec!r}; use avp, replay:FILE or synthetic")
