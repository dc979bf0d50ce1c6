"""The custom 2-DoF head mount (yaw, pitch): its own driver, never G1 motor slots 29-34.

The default driver speaks two DDS topics of our own (``lara/head/cmd`` and ``lara/head/state``,
``lara_g1`` ``HeadCmd_``/``HeadState_``), served on the robot by the mount's controller and by
the simulated G1. ``driver: none`` is for a robot without the mount: the head joints then hold
the embodiment's default pose and count as always fresh.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds.messages import HeadCmd_, HeadState_

log = logging.getLogger(__name__)


class DdsHead:
    def __init__(self, domain_id: int, interface: str | None, size: int,
                 cmd_topic: str = "lara/head/cmd", state_topic: str = "lara/head/state"):
        self.size = size
        self._writer = dds.writer(domain_id, cmd_topic, HeadCmd_, interface)
        self.reader = dds.reader(domain_id, state_topic, HeadState_, interface)
        self._state: tuple[np.ndarray, float] | None = None

    def send(self, q: np.ndarray) -> None:
        self._writer.write(HeadCmd_(q=[float(v) for v in q]))

    def poll(self) -> None:
        for msg in self.reader.take(N=8):
            if isinstance(msg, HeadState_):
                if len(msg.q) != self.size:
                    log.warning("ignoring head state with %d values (expected %d)", len(msg.q), self.size)
                    continue
                self._state = (np.asarray(msg.q, dtype=np.float32), time.monotonic())

    def state(self) -> tuple[np.ndarray, float] | None:
        return self._state

    def close(self) -> None:
        self._writer = None


class NoHead:
    """No head mount: the head joints read as their default pose; commands go nowhere."""

    reader = None

    def __init__(self, default: np.ndarray):
        self._default = np.asarray(default, dtype=np.float32)

    def send(self, q: np.ndarray) -> None:
        pass

    def poll(self) -> None:
        pass

    def state(self) -> tuple[np.ndarray, float]:
        return self._default, time.monotonic()

    def close(self) -> None:
        pass


def make_head(config: dict, default: np.ndarray, domain_id: int, interface: str | None):
    driver = config.get("driver", "dds")
    if driver == "dds":
        return DdsHead(domain_id, interface, len(default), config.get("cmd_topic", "lara/head/cmd"),
                       config.get("state_topic", "lara/head/state"))
    if driver == "none":
        return NoHead(default)
    raise ValueError(f"head.driver must be 'dds' or 'none', got {driver!r}")
