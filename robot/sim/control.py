"""Scripted control of a running ``lara-sim`` over DDS (request/reply topics of our own).

``SimControl(domain_id).reset("pour", seed=3)`` and ``.status()`` -> ``{task, stages, t, objects, ...}``.
Requests carry a random id and are resent until the reply with that id arrives (the simulator
answers a repeated id from its cache, so a resent reset does not reset twice).
"""
from __future__ import annotations

import json
import secrets
import time

from lara_g1.core.errors import LaraError
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.messages import SimReply_, SimRequest_


class SimControlError(LaraError, RuntimeError):
    pass


class SimControl:
    def __init__(self, domain_id: int, interface: str | None = "lo", timeout_s: float = 5.0):
        self.timeout_s = timeout_s
        self._writer = dds.writer(domain_id, topics.SIM_REQUEST, SimRequest_, interface, qos=dds.RELIABLE)
        self._reader = dds.reader(domain_id, topics.SIM_REPLY, SimReply_, interface, qos=dds.RELIABLE)
        self.domain_id = domain_id

    def _call(self, command: str, body: dict) -> dict:
        rid = secrets.randbits(63)
        request = SimRequest_(request_id=rid, command=command, body=json.dumps(body))
        deadline = time.monotonic() + self.timeout_s
        next_send = 0.0
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_send:  # resent until answered: discovery may still be under way
                self._writer.write(request)
                next_send = now + 0.25
            for reply in self._reader.take(N=16):
                if isinstance(reply, SimReply_) and reply.request_id == rid:
                    data = json.loads(reply.body)
                    if not reply.ok:
                        raise SimControlError(f"lara-sim refused {command}: {data.get('error')}")
                    return data
            time.sleep(0.01)
        raise SimControlError(f"no answer from lara-sim on DDS domain {self.domain_id} within "
                              f"{self.timeout_s} s (is it running?)")

    def reset(self, task: str, seed: int = 0) -> dict:
        """Reset the scene (a different task rebuilds it); returns the new status."""
        return self._call("reset", {"task": task, "seed": int(seed)})

    def status(self) -> dict:
        """``{task, seed, t, stages: {name: bool}, held, objects: {name: {pos, quat}} (world frame),
        counters, physics_rate_hz, ...}``."""
        return self._call("status", {})
