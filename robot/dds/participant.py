"""One DDS participant per (process, domain), bound to the configured network interface.

CycloneDDS takes its network configuration per domain and per process, the first time the
domain is created; a second, different interface for the same domain in one process is an
error we report instead of silently ignoring. Readers and writers here use the QoS Unitree's
SDK uses for its low-level topics (best effort, keep last 1) unless told otherwise, so a late
or slow reader always gets the newest sample.
"""
from __future__ import annotations

import threading
from typing import Any

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

_lock = threading.Lock()
_domains: dict[int, tuple[str | None, Domain | None, DomainParticipant]] = {}
_topics: dict[tuple[int, str], Topic] = {}

BEST_EFFORT = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1))
RELIABLE = Qos(Policy.Reliability.Reliable(duration(milliseconds=100)), Policy.History.KeepLast(8))


def domain_config_xml(interface: str | None) -> str:
    """CycloneDDS XML restricting traffic to ``interface`` (``lo``: unicast peer on 127.0.0.1)."""
    parts = ["<CycloneDDS><Domain Id=\"any\"><General>"]
    if interface:
        parts.append(f"<Interfaces><NetworkInterface name=\"{interface}\" priority=\"default\" "
                     f"multicast=\"default\"/></Interfaces>")
    parts.append("</General>")
    if interface == "lo":
        # The loopback device has no multicast flag: discovery goes unicast to local ports.
        parts.append("<Discovery><ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>"
                     "100</MaxAutoParticipantIndex><Peers><Peer Address=\"127.0.0.1\"/></Peers>"
                     "</Discovery>")
    parts.append("</Domain></CycloneDDS>")
    return "".join(parts)


def participant(domain_id: int, interface: str | None = None) -> DomainParticipant:
    """The process-wide participant for ``domain_id``, created on ``interface`` on first use."""
    if not 0 <= int(domain_id) <= 232:
        raise ValueError(f"DDS domain id must be in 0..232, got {domain_id}")
    with _lock:
        if domain_id in _domains:
            iface, _, dp = _domains[domain_id]
            if interface is not None and iface is not None and interface != iface:
                raise ValueError(f"DDS domain {domain_id} is already open on interface {iface!r} in "
                                 f"this process; cannot open it again on {interface!r}")
            return dp
        domain = Domain(domain_id, domain_config_xml(interface)) if interface else None
        dp = DomainParticipant(domain_id)
        _domains[domain_id] = (interface, domain, dp)
        return dp


def topic(domain_id: int, name: str, data_type: Any, interface: str | None = None) -> Topic:
    dp = participant(domain_id, interface)
    with _lock:
        key = (domain_id, name)
        if key not in _topics:
            _topics[key] = Topic(dp, name, data_type)
        existing = _topics[key]
    if existing.data_type is not data_type:
        raise TypeError(f"topic {name!r} on domain {domain_id} already has type "
                        f"{existing.data_type.__name__}, not {data_type.__name__}")
    return existing


def writer(domain_id: int, name: str, data_type: Any, interface: str | None = None,
           qos: Qos = BEST_EFFORT) -> DataWriter:
    return DataWriter(participant(domain_id, interface), topic(domain_id, name, data_type, interface), qos=qos)


def reader(domain_id: int, name: str, data_type: Any, interface: str | None = None,
           qos: Qos = BEST_EFFORT) -> DataReader:
    return DataReader(participant(domain_id, interface), topic(domain_id, name, data_type, interface), qos=qos)
