"""Pre-flight checks that move nothing: ``lara-robot check``, and the fast subset that
``lara-robot run``/``eval`` and ``lara-teleop record --robot g1`` run before they command anything.

Each check is one function returning a :class:`CheckResult`: its name, ``pass``/``warn``/``fail``
(``skip`` where it cannot apply), the measured value and the fix, printed as one line.

How each thing is measured, without publishing anything the robot listens to:

- **DDS** (:func:`listen`): one listening window (1 s) on the configured domain and interface with
  readers only: ``rt/lowstate`` (rate, age, CRC, ``mode_machine``, the arm joints), the hand and
  head state topics, ``rt/arm_sdk`` and ``rt/lowcmd`` (samples anyone sends), and CycloneDDS's
  builtin discovery topics DCPSPublication and DCPSParticipant: who publishes on which topic and,
  from each participant's properties (``__Hostname``, ``__Pid``, ``__ProcessName``,
  ``__NetworkAddresses``: CycloneDDS 0.10.5 and 11 announce them), which host and process it is
  and its unicast addresses. A publisher that is known but has not delivered yet (a new reader is
  matched after a few hundred ms) extends the window, by up to 3 s. This process's own participant is told apart by its GUID, so the
  robot driver's own ``rt/arm_sdk`` writer (lara-robot run) is not "another publisher".
- **Which interface carries rt/lowstate**: CycloneDDS does not say which interface a sample came in
  on, and it binds one interface per domain per process at first use. So: the publisher's
  announced unicast addresses are matched to this computer's interfaces (their IPv4 subnets). When
  nothing arrives, :func:`search_lowstate` starts one probe process per interface that is up
  (``python -m lara_g1.robot.preflight --probe IFACE``) and listens there on the configured domain,
  0 (the G1) and 1 (the simulator) to say where ``rt/lowstate`` does flow.
- **Camera**: frames read for a window: size, measured fps, and what the driver knows
  (:meth:`lara_g1.robot.cameras.base.Camera.info`: serial, exposure mode).
- **Server**: ``ping``, ``metadata``, then timed ``infer`` round trips; the clock offset from
  ``ping``'s ``server_time`` (the only clock the protocol carries) against the midpoint of the
  request's send and receive times, from the ping with the shortest round trip.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import ipaddress
import json
import re
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from lara_g1.core.embodiment import Embodiment
from lara_g1.robot.dds import topics

if TYPE_CHECKING:
    from lara_g1.robot.cameras.base import Camera, Frame
    from lara_g1.robot.g1 import G1Config
    from lara_g1.runtime.client import PolicyClient

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"

G1_DOMAIN = 0                 # the real G1's DDS domain (docs/ROBOT.md, "Domains")
SIM_DOMAIN = 1                # Unitree's simulator convention, lara-sim's default
ROBOT_LOWSTATE_HZ = 500.0     # what the G1 publishes
SIM_LOWSTATE_HZ = 200.0       # what lara-sim publishes (--state-hz)
MAX_STATE_AGE_S = 0.25        # an older newest sample: the stream stopped
# LowState_.mode_machine: 5 is the 29-DoF G1 whose arm motors 15-28 configs/robot/ map (and what
# lara-sim reports). Other values are reported, not interpreted.
KNOWN_MODE_MACHINES = {5: "29-DoF G1 (arm motors 15-28, as configs/robot/ map them)"}
DFX_SERVICE_FIX = ("start Unitree's Inspire DFX hand service on the G1's computer (DFX_inspire_service: "
                   "sudo ./inspire_g1) and check the hands' power and cables; Ethernet (FTP) hands: "
                   "hands.variant: ftp in the robot config")
DOMAIN_FIX = ("check --domain / the G1's DDS domain (0), and dds.interface / --interface: the network card "
              "cabled to the robot, with an address on its network (192.168.123.0/24); is the robot on "
              "(or lara-sim running on that domain)?")
FAST_CHECKS = ("dds.lowstate", "command.arm_sdk", "joints", "hands", "head", "server.layout")


# ---------------------------------------------------------------------------------------- results
@dataclass
class CheckResult:
    """One check: ``status`` is pass | warn | fail | skip; ``value`` what was measured; ``fix``
    what to do about a warn or fail; ``data`` the numbers behind it (for the JSON report)."""

    name: str
    status: str
    value: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        text = f"{self.status.upper():<4}  {self.name:<16} {self.value}"
        if self.fix and self.status in (WARN, FAIL):
            text += f"  -> fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "value": self.value, "fix": self.fix,
                "data": _jsonable(self.data)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def refusal(results: Sequence[CheckResult]) -> str | None:
    """The message a command refuses to start with, or None when no check failed."""
    failed = [r for r in results if r.failed]
    if not failed:
        return None
    return ("pre-flight check failed, nothing was commanded (lara-robot check runs every check):\n"
            + "\n".join("  " + r.line() for r in failed))


# ---------------------------------------------------------------------------------------- network
@dataclass(frozen=True)
class NetInterface:
    name: str
    up: bool                  # administratively up
    link: bool                # carrier (IFF_RUNNING): a cable and a peer
    loopback: bool
    address: str | None = None
    prefix: int | None = None

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        if self.address is None or self.prefix is None:
            return None
        return ipaddress.ip_interface(f"{self.address}/{self.prefix}").network

    def describe(self) -> str:
        text = self.name + (f" {self.address}/{self.prefix}" if self.address else " (no IPv4)" if self.up else "")
        if not self.up:
            text += " DOWN"
        elif not self.link:
            text += " NO LINK"
        return text


_SIOCGIFFLAGS, _SIOCGIFADDR, _SIOCGIFNETMASK = 0x8913, 0x8915, 0x891B
_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40


def network_interfaces() -> list[NetInterface]:
    """This computer's network interfaces with their IPv4 address and state (Linux ioctls)."""
    import fcntl

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req), 16)[0]
            except OSError:
                continue
            address = prefix = None
            try:
                address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24])
                mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, req)[20:24])
                prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
            except OSError:     # no IPv4 address
                address = None
            found.append(NetInterface(name, bool(flags & _IFF_UP), bool(flags & _IFF_RUNNING),
                                      bool(flags & _IFF_LOOPBACK), address, prefix))
    return found


def interface_for(address: str, interfaces: Sequence[NetInterface]) -> NetInterface | None:
    """The local interface ``address`` is reached through: its own, else the one whose subnet holds it."""
    ip = ipaddress.ip_address(address)
    for iface in interfaces:
        if iface.address == address:
            return iface
    for iface in interfaces:
        net = iface.network
        if net is not None and ip in net and not iface.loopback:
            return iface
    if ip.is_loopback:
        return next((i for i in interfaces if i.loopback), None)
    return None


# ---------------------------------------------------------------------------------------- DDS
@dataclass(frozen=True)
class Publisher:
    """A DataWriter seen through DDS discovery, with what its participant announces about itself."""

    topic: str
    type_name: str
    participant: str
    own: bool                 # a writer of this process's own participant
    host: str | None = None
    pid: int | None = None
    process: str | None = None
    addresses: tuple[str, ...] = ()

    def describe(self, addresses: bool = True) -> str:
        if self.pid is None and self.host is None:
            who = f"participant {self.participant[:8]} (it announces no host or process)"
        else:
            who = f"pid {self.pid} ({self.process or '?'}) on host {self.host or '?'}"
        if addresses and self.addresses:
            who += f" at {', '.join(self.addresses)}"
        return who


_UDP4 = re.compile(r"udp/(\d{1,3}(?:\.\d{1,3}){3}):")


def _unicast_addresses(announced: str | None) -> tuple[str, ...]:
    """The unicast IPv4 addresses in CycloneDDS's ``__NetworkAddresses`` property."""
    out = []
    for address in _UDP4.findall(announced or ""):
        if not ipaddress.ip_address(address).is_multicast and address not in out:
            out.append(address)
    return tuple(out)


@dataclass
class Stream:
    """The samples of one topic in a listening window: count, first/last receive time, the newest."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    latest: Any = None

    def add(self, value: Any, now: float) -> None:
        self.count += 1
        self.first = now if self.first is None else self.first
        self.last, self.latest = now, value

    def rate_hz(self) -> float | None:
        if self.count < 2 or self.last is None or self.first is None or self.last <= self.first:
            return None
        return (self.count - 1) / (self.last - self.first)

    def age_s(self, now: float) -> float | None:
        return None if self.last is None else now - self.last


@dataclass
class DdsSnapshot:
    """What one listening window saw (:func:`listen`)."""

    domain: int
    interface: str | None
    window_s: float
    end: float = 0.0                      # time.monotonic() when the window closed
    lowstate: Stream = field(default_factory=Stream)
    lowstate_crc_bad: int = 0
    hands: Stream = field(default_factory=Stream)     # latest: (left6, right6), 1 = open
    hands_source: str = ""
    hands_error: str | None = None
    head: Stream = field(default_factory=Stream)      # latest: head q
    head_source: str = ""
    commands: dict[str, Stream] = field(default_factory=lambda: {topics.ARM_SDK: Stream(), topics.LOWCMD: Stream()})
    publishers: list[Publisher] = field(default_factory=list)
    error: str | None = None              # DDS could not be opened

    @property
    def where(self) -> str:
        return f"DDS domain {self.domain} on {self.interface or 'the default interface'}"

    def others(self, topic: str) -> list[Publisher]:
        return [p for p in self.publishers if p.topic == topic and not p.own]

    def own(self, topic: str) -> list[Publisher]:
        return [p for p in self.publishers if p.topic == topic and p.own]


def _best_effort(depth: int = 64):
    from cyclonedds.core import Policy, Qos

    return Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(depth))


def listen(config: G1Config, window_s: float = 1.0, grace_s: float = 3.0) -> DdsSnapshot:
    """Listen on the robot config's domain and interface for ``window_s`` (up to ``grace_s`` longer
    while a known publisher has not delivered yet); publishes nothing."""
    snap = _listen(config, window_s, grace_s)
    gc.collect()   # the builtin readers sit in cycles with their conditions: gone now, not in a control loop
    return snap


def _listen(config: G1Config, window_s: float, grace_s: float) -> DdsSnapshot:
    from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsParticipant, BuiltinTopicDcpsPublication
    from cyclonedds.core import InstanceState, Policy, ReadCondition, SampleState, ViewState

    from lara_g1.robot.dds import participant as dds
    from lara_g1.robot.dds.crc import lowstate_crc
    from lara_g1.robot.dds.messages import HeadState_, LowCmd_, LowState_, MotorStates_
    from lara_g1.robot.hands import HandError, HandMapping

    domain, iface = config.domain_id, config.interface
    snap = DdsSnapshot(domain, iface, window_s)
    hands_dfx = config.hands.get("variant", "dfx") == "dfx"
    head_dds = config.head.get("driver", "dds") == "dds"
    hand_topic = config.hands.get("state_topic", topics.INSPIRE_STATE)
    head_topic = config.head.get("state_topic", topics.HEAD_STATE)
    qos = _best_effort()
    try:
        dp = dds.participant(domain, iface)
        publications = BuiltinDataReader(dp, BuiltinTopicDcpsPublication)
        participants = BuiltinDataReader(dp, BuiltinTopicDcpsParticipant)
        low = dds.reader(domain, topics.LOWSTATE, LowState_, iface, qos=qos)
        cmds = {t: dds.reader(domain, t, LowCmd_, iface, qos=qos) for t in (topics.ARM_SDK, topics.LOWCMD)}
        hand_reader = dds.reader(domain, hand_topic, MotorStates_, iface, qos=qos) if hands_dfx else None
        head_reader = dds.reader(domain, head_topic, HeadState_, iface, qos=qos) if head_dds else None
    except Exception as exc:  # noqa: BLE001 - cyclonedds raises DDSException (or ValueError) for a bad interface
        snap.error = f"cannot open {snap.where}: {exc}"
        return snap
    snap.hands_source = hand_topic if hands_dfx else "Modbus TCP"
    snap.head_source = head_topic if head_dds else f"head.driver {config.head.get('driver')}"
    # A new reader receives only once the publisher has discovered it (a few hundred ms, more on a
    # loaded host): while a publisher of a stream that has not delivered yet is known, keep listening,
    # up to grace_s past the window.
    alive = SampleState.Any | ViewState.Any | InstanceState.Alive
    own = str(dp.guid)
    streams = [(topics.LOWSTATE, snap.lowstate)] + ([(hand_topic, snap.hands)] if hands_dfx else []) + \
              ([(head_topic, snap.head)] if head_dds else [])

    known = ReadCondition(publications, alive)

    def unmatched() -> bool:
        silent = {t for t, stream in streams if stream.count == 0}
        return bool(silent) and any(e.topic_name in silent and str(e.participant_key) != own
                                    for e in publications.read(N=4096, condition=known))

    start = time.monotonic()
    deadline, hard_deadline, next_look = start + window_s, start + window_s + grace_s, 0.0
    while True:
        now = time.monotonic()
        for msg in low.take(N=64):
            if isinstance(msg, LowState_):
                snap.lowstate.add(msg, now)
                if lowstate_crc(msg) != msg.crc:
                    snap.lowstate_crc_bad += 1
        for topic, reader in cmds.items():
            for msg in reader.take(N=64):
                if isinstance(msg, LowCmd_):
                    snap.commands[topic].add(msg, now)
        if hand_reader is not None:
            for msg in hand_reader.take(N=16):
                if isinstance(msg, MotorStates_):
                    try:
                        snap.hands.add(HandMapping.from_dfx([s.q for s in msg.states]), now)
                    except HandError as exc:
                        snap.hands_error = str(exc)
        if head_reader is not None:
            for msg in head_reader.take(N=16):
                if isinstance(msg, HeadState_):
                    snap.head.add(np.asarray(msg.q, dtype=np.float32), now)
        if now >= deadline:
            if now >= hard_deadline or (now >= next_look and not unmatched()):
                break
            next_look = now + 0.05
        time.sleep(0.005)
    snap.end = time.monotonic()
    if not hands_dfx:
        _read_ftp_hands(config, snap)

    props: dict[str, dict[str, str]] = {}
    for p in participants.read(N=4096, condition=ReadCondition(participants, alive)):
        props[str(p.key)] = {q.key: q.value for q in p.qos if isinstance(q, Policy.Property)}
    wanted = {topics.LOWSTATE, topics.ARM_SDK, topics.LOWCMD, hand_topic, head_topic}
    for e in publications.read(N=4096, condition=known):
        if e.topic_name not in wanted:
            continue
        announced = props.get(str(e.participant_key), {})
        pid = announced.get("__Pid")
        snap.publishers.append(Publisher(
            e.topic_name, e.type_name, str(e.participant_key), str(e.participant_key) == own,
            announced.get("__Hostname"), int(pid) if pid and pid.isdigit() else None,
            announced.get("__ProcessName"), _unicast_addresses(announced.get("__NetworkAddresses"))))
    return snap


def _read_ftp_hands(config: G1Config, snap: DdsSnapshot) -> None:
    """Inspire FTP hands: one Modbus read of each hand's actual angles."""
    from lara_g1.robot.hands import FINGERS_PER_HAND, FTP_ANGLE_ACT, FTP_PORT, HandError, HandMapping, ModbusTcpClient

    ftp = config.hands.get("ftp") or {}
    values, where = {}, []
    for side in ("left", "right"):
        spec = ftp.get(side) or {}
        host, port = str(spec.get("host", "?")), int(spec.get("port", FTP_PORT))
        where.append(f"{side} {host}:{port}")
        client = ModbusTcpClient(host, port, int(ftp.get("unit_id", 1)), float(ftp.get("timeout_s", 0.2)))
        try:
            values[side] = HandMapping.from_ftp(client.read_holding_registers(FTP_ANGLE_ACT, FINGERS_PER_HAND))
        except HandError as exc:
            snap.hands_error = f"{side} hand: {exc}"
        finally:
            client.close()
    snap.hands_source = "Modbus TCP " + ", ".join(where)
    if len(values) == 2:
        snap.hands.add((values["left"], values["right"]), time.monotonic())


def search_lowstate(domains: Sequence[int], seconds: float = 2.0,
                    interfaces: Sequence[NetInterface] | None = None) -> list[dict[str, Any]]:
    """Where ``rt/lowstate`` flows: ``[{interface, domain, samples}]`` for every interface that is up
    with an address, on each of ``domains``; one probe process per interface, all in parallel."""
    names = [i.name for i in (interfaces if interfaces is not None else network_interfaces()) if i.up and i.address]
    domain_arg = ",".join(str(d) for d in dict.fromkeys(domains))
    procs = {name: subprocess.Popen([sys.executable, "-m", "lara_g1.robot.preflight", "--probe", name,
                                     "--domains", domain_arg, "--seconds", str(seconds)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for name in names}
    found = []
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=30.0 + seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            continue
        try:
            report = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            continue
        for domain, samples in report.get("counts", {}).items():
            found.append({"interface": name, "domain": int(domain), "samples": int(samples)})
    return found


def _probe(interface: str, domains: Sequence[int], seconds: float) -> dict[str, Any]:
    """Count rt/lowstate samples on ``domains`` via ``interface`` (run in its own process)."""
    from lara_g1.robot.dds import participant as dds
    from lara_g1.robot.dds.messages import LowState_

    readers, counts, errors = {}, {}, {}
    for d in domains:
        try:
            readers[d] = dds.reader(d, topics.LOWSTATE, LowState_, interface, qos=_best_effort())
            counts[d] = 0
        except Exception as exc:  # noqa: BLE001 - reported, the other domains still probed
            errors[d] = str(exc)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for d, reader in readers.items():
            counts[d] += sum(isinstance(m, LowState_) for m in reader.take(N=64))
        time.sleep(0.005)
    return {"interface": interface, "counts": counts, "errors": errors}


# ---------------------------------------------------------------------------------------- checks
def check_interfaces(snap: DdsSnapshot, interfaces: Sequence[NetInterface]) -> CheckResult:
    """The interfaces here, the configured one, and which one carries rt/lowstate."""
    configured = snap.interface
    listing = ", ".join(i.describe() + (" [configured]" if i.name == configured else "") for i in interfaces)
    names = {i.name: i for i in interfaces}
    carriers, via = [], []
    for pub in snap.others(topics.LOWSTATE):
        for address in pub.addresses:
            iface = interface_for(address, interfaces)
            via.append(iface.name if iface else None)
            carriers.append(f"from {address} ({pub.describe(addresses=False)}) via "
                            f"{iface.name if iface else 'no local subnet (routed?)'}")
        if not pub.addresses:
            carriers.append(f"from {pub.describe()} (no address announced) via "
                            f"{configured or 'the default interface'}")
    if not snap.others(topics.LOWSTATE):
        carriers.append(f"none on DDS domain {snap.domain}")
    data = {"interfaces": [dataclasses.asdict(i) for i in interfaces], "configured": configured,
            "lowstate_via": via, "lowstate_from": [p.addresses for p in snap.others(topics.LOWSTATE)]}
    value = f"rt/lowstate {'; '.join(carriers)}; interfaces: {listing or 'none'}"
    if configured is None:
        return CheckResult("dds.interfaces", WARN, value + "; dds.interface not set: CycloneDDS picks one",
                           "set dds.interface in the robot config (or --interface) to the network card cabled "
                           "to the robot", data)
    iface = names.get(configured)
    if iface is None:
        return CheckResult("dds.interfaces", FAIL, f"dds.interface {configured!r} does not exist here; {value}",
                           f"set dds.interface in the robot config (or --interface) to one of "
                           f"{', '.join(names) or 'the interfaces'}: the one cabled to the robot", data)
    if not iface.up or not iface.link:
        return CheckResult("dds.interfaces", FAIL, f"{configured} is {'down' if not iface.up else 'up without a link'}"
                           f"; {value}", f"plug the Ethernet cable from the robot into {configured} and bring it "
                           f"up (ip link set {configured} up)", data)
    if iface.address is None:
        return CheckResult("dds.interfaces", FAIL, f"{configured} has no IPv4 address; {value}",
                           f"give {configured} an address on the robot's network, e.g. "
                           f"sudo ip addr add 192.168.123.99/24 dev {configured}", data)
    return CheckResult("dds.interfaces", PASS, value, "", data)


def check_lowstate(snap: DdsSnapshot, expected_hz: float = ROBOT_LOWSTATE_HZ,
                   search: Sequence[dict[str, Any]] | None = None) -> CheckResult:
    """rt/lowstate arrives on the configured domain and interface, fresh, at the robot's rate."""
    data: dict[str, Any] = {"domain": snap.domain, "interface": snap.interface, "samples": snap.lowstate.count,
                            "expected_hz": expected_hz, "search": list(search or [])}
    if snap.error:
        return CheckResult("dds.lowstate", FAIL, snap.error, DOMAIN_FIX, data)
    if snap.lowstate.count == 0:
        here = (snap.interface, snap.domain)
        elsewhere = [f for f in search or [] if f["samples"] > 0 and (f["interface"], f["domain"]) != here]
        value = f"no rt/lowstate on {snap.where} within {snap.window_s:.1f} s"
        if elsewhere:
            f = elsewhere[0]
            flows = f"; it flows on DDS domain {f['domain']} via {f['interface']}"
            options = ([f"--domain {f['domain']}"] if f["domain"] != snap.domain else []) + \
                      ([f"--interface {f['interface']}"] if f["interface"] != snap.interface else [])
            return CheckResult("dds.lowstate", FAIL, value + flows,
                               f"use {' '.join(options)} (robot config: dds.domain_id / dds.interface); "
                               + DOMAIN_FIX.split(", and")[0], data)
        if search is not None:
            tried = sorted({f["domain"] for f in search})
            ifaces = sorted({f["interface"] for f in search})
            value += f", nor on domains {tried} via {', '.join(ifaces) or 'any interface'}"
        return CheckResult("dds.lowstate", FAIL, value, DOMAIN_FIX, data)
    rate = snap.lowstate.rate_hz()
    age = snap.lowstate.age_s(snap.end) or 0.0
    data.update(rate_hz=rate, age_ms=1e3 * age, crc_bad=snap.lowstate_crc_bad)
    rate_text = "1 sample" if rate is None else f"{rate:.0f} Hz"
    value = f"{rate_text}, newest {1e3 * age:.0f} ms old, on {snap.where}"
    if age > MAX_STATE_AGE_S:
        return CheckResult("dds.lowstate", FAIL, f"stale: {value}",
                           "the robot's state stopped arriving: check the cable and the robot", data)
    if snap.lowstate_crc_bad:
        return CheckResult("dds.lowstate", WARN, f"{value}; CRC wrong in {snap.lowstate_crc_bad} of "
                           f"{snap.lowstate.count} samples", "a sender with another LowState_ layout or a "
                           "corrupting link: check the robot's firmware and the cable", data)
    if rate is None or rate < 0.5 * expected_hz:
        return CheckResult("dds.lowstate", WARN, f"{value}; expected about {expected_hz:.0f} Hz",
                           "rt/lowstate arrives slower than it is sent: use a direct wired link (no Wi-Fi, "
                           "no busy switch) and a less loaded computer", data)
    return CheckResult("dds.lowstate", PASS, value, "", data)


def check_mode_machine(snap: DdsSnapshot) -> CheckResult:
    """LowState_.mode_machine: which G1 variant answers."""
    low = snap.lowstate.latest
    if low is None:
        return CheckResult("dds.mode_machine", SKIP, "no rt/lowstate to read it from", "see dds.lowstate")
    mm = int(low.mode_machine)
    if mm in KNOWN_MODE_MACHINES:
        return CheckResult("dds.mode_machine", PASS, f"{mm}: {KNOWN_MODE_MACHINES[mm]}", "", {"mode_machine": mm})
    return CheckResult("dds.mode_machine", WARN, f"{mm}: not the 29-DoF G1 (5) whose arm motors 15-28 the robot "
                       "configs map", "check the G1 variant; for another one set arm_motors in the robot config "
                       "to its arm motor slots", {"mode_machine": mm})


def check_command_channel(snap: DdsSnapshot, topic: str = topics.ARM_SDK) -> CheckResult:
    """Other publishers on rt/arm_sdk (fail) or rt/lowcmd (warn), through DDS discovery."""
    name = "command." + topic.rsplit("/", 1)[-1]
    if snap.error:
        return CheckResult(name, SKIP, "DDS not open", "see dds.lowstate")
    others, samples = snap.others(topic), snap.commands[topic]
    data = {"others": [dataclasses.asdict(p) for p in others], "samples": samples.count,
            "own_writers": len(snap.own(topic))}
    if not others and not samples.count:
        return CheckResult(name, PASS, f"no other publisher on {topic}", "", data)
    who = "; ".join(p.describe() for p in others) or "an undiscovered publisher"
    sending = (f", {samples.count} commands in {snap.window_s:.1f} s" if samples.count
               else ", silent during the check (a controller that just exited stays listed until its DDS "
                    "lease ends, about 10 s)")
    value = f"{max(len(others), 1)} other publisher(s) on {topic}: {who}{sending}"
    if topic == topics.ARM_SDK:
        return CheckResult(name, FAIL, value, "stop the other controller (another lara-robot or lara-teleop, "
                           "Unitree's arm_sdk example or teleop) first: two rt/arm_sdk streams fight over the arms",
                           data)
    return CheckResult(name, WARN, value, "a program drives rt/lowcmd (whole-body debug mode, in which the robot "
                       "does not blend rt/arm_sdk): stop it and return the robot to its locomotion controller", data)


def measured_pose(snap: DdsSnapshot, config: G1Config, emb: Embodiment) -> np.ndarray:
    """The measured joints in the embodiment layout, NaN where a part did not report."""
    from lara_g1.robot.hands import HandMapping

    q = np.full(emb.dim, np.nan)
    low = snap.lowstate.latest
    if low is not None:
        for group, first in config.arm_motors.items():
            g = emb.group(group)
            for k in range(g.size):
                q[g.start + k] = low.motor_state[first + k].q
    if snap.hands.latest is not None:
        HandMapping.from_embodiment(emb).join(q, *snap.hands.latest)
    head = emb.group("head")
    if config.head.get("driver", "dds") == "none":
        q[head.slice] = emb.default_pose[head.slice]
    elif snap.head.latest is not None and len(snap.head.latest) == head.size:
        q[head.slice] = snap.head.latest
    return q


def check_joints(snap: DdsSnapshot, config: G1Config, emb: Embodiment, margin: float = 0.05,
                 open_fraction_tolerance: float = 0.02) -> CheckResult:
    """Every measured joint inside the embodiment's limits; angles (rad) at least ``margin`` inside.

    Hands (0..1 open fraction) span their whole travel, so only ``open_fraction_tolerance`` past
    either end counts."""
    q = measured_pose(snap, config, emb)
    known = np.flatnonzero(np.isfinite(q))
    if known.size == 0:
        return CheckResult("joints", SKIP, "no joint measured", "see dds.lowstate, hands and head")
    outside, near, closest = [], [], None
    for i in known:
        name, v, lo, hi = emb.joint_names[i], float(q[i]), float(emb.lower[i]), float(emb.upper[i])
        rad = emb.unit_of(int(i)) == "rad"
        tol = 0.0 if rad else open_fraction_tolerance
        if v < lo - tol or v > hi + tol:
            outside.append(f"{name} {v:.3f} (limits {lo:.3f}..{hi:.3f})")
        elif rad:
            gap, side = min((v - lo, "lower"), (hi - v, "upper"))
            if gap < margin:
                near.append(f"{name} {v:.3f}, {gap:.3f} from its {side} limit")
            if closest is None or gap < closest[0]:
                closest = (gap, f"{name} {gap:.2f} rad from its {side} limit")
    missing = [g.name for g in emb.groups if not np.all(np.isfinite(q[g.slice]))]
    data = {"q": q, "margin": margin, "outside": outside, "near": near, "not_measured": missing}
    tail = f"; not measured: {', '.join(missing)}" if missing else ""
    if outside:
        return CheckResult("joints", FAIL, f"outside the limits: {'; '.join(outside)}{tail}",
                           f"check the G1 variant (mode_machine), arm_motors in the robot config and the limits "
                           f"in configs/embodiment/{emb.name}.yaml; bring the joint back into its range before "
                           "starting", data)
    if near:
        return CheckResult("joints", WARN, f"within {margin} rad of a limit: {'; '.join(near)}{tail}",
                           "move the arm away from the limit before starting (the ramp-in starts from the "
                           "measured pose)", data)
    value = f"{known.size}/{emb.dim} joints inside the limits ({margin} rad margin)"
    if closest is not None:
        value += f"; closest: {closest[1]}"
    return CheckResult("joints", PASS, value + tail, "", data)


def _rounded(values: Any, digits: int = 2) -> list[float]:
    return [round(float(v), digits) + 0.0 for v in values]


def _fresh(stream: Stream, snap: DdsSnapshot) -> tuple[bool, str]:
    age = stream.age_s(snap.end)
    rate = stream.rate_hz()
    text = (f"{rate:.0f} Hz, " if rate else "") + (f"newest {1e3 * age:.0f} ms old" if age is not None else "")
    return (age is not None and age <= MAX_STATE_AGE_S), text


def check_hands(snap: DdsSnapshot, config: G1Config) -> CheckResult:
    """The Inspire hands answer: DFX state fresh on DDS, or the FTP hands' Modbus read works."""
    dfx = config.hands.get("variant", "dfx") == "dfx"
    if dfx and snap.error:
        return CheckResult("hands", SKIP, "DDS not open", "see dds.lowstate")
    if not dfx:
        if snap.hands.latest is None:
            return CheckResult("hands", FAIL, f"the FTP hands do not answer ({snap.hands_source}): "
                               f"{snap.hands_error}", "check each hand's Ethernet cable and address "
                               "(hands.ftp.left/right.host in the robot config) and that it answers Modbus TCP "
                               "on port 6000")
        left, right = snap.hands.latest
        return CheckResult("hands", PASS, f"{snap.hands_source}: left {_rounded(left)}, right "
                           f"{_rounded(right)} (1 = open)")
    if snap.hands.count == 0 and snap.lowstate.count == 0 and snap.head.count == 0:
        return CheckResult("hands", SKIP, f"nothing arrives on {snap.where}", "see dds.lowstate")
    if snap.hands.count == 0:
        detail = f" ({snap.hands_error})" if snap.hands_error else ""
        return CheckResult("hands", FAIL, f"no {snap.hands_source} on {snap.where} within {snap.window_s:.1f} s: "
                           f"the Inspire hands do not answer{detail}", DFX_SERVICE_FIX,
                           {"samples": 0})
    fresh, text = _fresh(snap.hands, snap)
    data = {"samples": snap.hands.count, "rate_hz": snap.hands.rate_hz()}
    if not fresh:
        return CheckResult("hands", FAIL, f"{snap.hands_source} stale: {text}", DFX_SERVICE_FIX, data)
    left, right = snap.hands.latest
    return CheckResult("hands", PASS, f"{snap.hands_source}: {text}; left {_rounded(left)}, right "
                       f"{_rounded(right)} (1 = open)", "", data)


def check_head(snap: DdsSnapshot, config: G1Config, emb: Embodiment | None = None) -> CheckResult:
    """The head mount answers (its state topic fresh); ``head.driver: none`` needs nothing."""
    driver = config.head.get("driver", "dds")
    if driver == "none":
        return CheckResult("head", PASS, "no head mount (head.driver: none): the head joints hold the default pose")
    if driver != "dds":
        return CheckResult("head", WARN, f"head.driver {driver!r}: not checked", "")
    if snap.error:
        return CheckResult("head", SKIP, "DDS not open", "see dds.lowstate")
    fix = ("start the head mount's controller (lara-head serve for a Dynamixel mount, docs/ROBOT.md) and check "
           "its power and cable; a G1 without the mount: head.driver: none in the robot config")
    if snap.head.count == 0 and snap.lowstate.count == 0 and snap.hands.count == 0:
        return CheckResult("head", SKIP, f"nothing arrives on {snap.where}", "see dds.lowstate")
    if snap.head.count == 0:
        return CheckResult("head", FAIL, f"no {snap.head_source} on {snap.where} within {snap.window_s:.1f} s: "
                           "the head mount does not answer", fix, {"samples": 0})
    fresh, text = _fresh(snap.head, snap)
    size = emb.group("head").size if emb is not None else len(snap.head.latest)
    if len(snap.head.latest) != size:
        return CheckResult("head", FAIL, f"{snap.head_source} carries {len(snap.head.latest)} values, expected "
                           f"{size}", fix)
    if not fresh:
        return CheckResult("head", FAIL, f"{snap.head_source} stale: {text}", fix)
    return CheckResult("head", PASS, f"{snap.head_source}: {text}; q {_rounded(snap.head.latest, 3)} rad",
                       "", {"samples": snap.head.count, "rate_hz": snap.head.rate_hz()})


def check_camera(camera: Camera, policy_cameras: dict[str, Sequence[int]] | None = None,
                 robot_cameras: Sequence[str] = ("head",), seconds: float = 1.0, first_frame_s: float = 3.0,
                 expected_fps: float | None = None) -> tuple[CheckResult, Frame | None]:
    """Connect, read frames for ``seconds``: size, measured fps and what the driver knows; warn where
    the size differs from the policy's (the server's metadata ``cameras``) or the rate from the
    configured one. Returns the result and the last frame (for the server's timing)."""
    from lara_g1.robot.cameras.base import CameraError

    try:
        camera.connect()
    except (CameraError, ImportError, OSError, RuntimeError, ValueError) as exc:
        return CheckResult("camera", FAIL, f"cannot open the camera: {exc}",
                           "plug the D455 into a USB 3 port (rs-enumerate-devices lists it), check the serial in "
                           "--camera-config, pip install 'lara-g1[realsense]'"), None
    try:
        info = camera.info()
        try:
            last = camera.read(timeout_s=first_frame_s)
            t_first, n = time.monotonic(), 1
            while time.monotonic() - t_first < seconds:
                last = camera.read(timeout_s=1.0)
                n += 1
            t_last = time.monotonic()
        except CameraError as exc:
            return CheckResult("camera", FAIL, f"no frames: {exc}", "check the camera's cable (USB 3) and that no "
                               "other program holds it; in sim: lara-sim must run with --render", {"info": info}), None
    finally:
        camera.disconnect()
    h, w = (int(v) for v in last.image.shape[:2])
    fps = (n - 1) / (t_last - t_first) if t_last > t_first and n > 1 else 0.0
    described = [f"{w}x{h} at {fps:.1f} fps"]
    for key in ("model", "serial", "firmware"):
        if info.get(key):
            described.append(f"{key} {info[key]}")
    if info.get("exposure"):
        described.append(f"exposure {info['exposure']}" + (f" {info['exposure_us']:.0f} us"
                                                           if info.get("exposure_us") else ""))
    value = ", ".join(described)
    data = {"width": w, "height": h, "fps": fps, "info": info, "policy": policy_cameras}
    warnings, fixes = [], []
    if expected_fps and fps < 0.8 * expected_fps:
        warnings.append(f"{fps:.1f} fps, configured {expected_fps:g}")
        fixes.append("a USB 2 port or cable, or a loaded computer: use USB 3 and check the load")
    elif fps < 5.0:
        warnings.append(f"only {fps:.1f} fps")
        fixes.append("the camera stalls: check its cable and the computer's load")
    if policy_cameras:
        name = robot_cameras[0] if robot_cameras and robot_cameras[0] in policy_cameras else next(iter(policy_cameras))
        ph, pw = (int(v) for v in policy_cameras[name])
        if (h, w) == (ph, pw):
            value += f"; the policy's {name} camera: {pw}x{ph}, the same"
        elif ph != pw:
            warnings.append(f"the policy's {name} camera is {pw}x{ph} (a GR00T N1.6 policy reports the raw "
                            "camera size its image chain was trained on)")
            fixes.append(f"run the camera at {pw}x{ph} (--camera-config width/height; lara-sim --render {pw}x{ph})")
        elif h == w or min(h, w) < ph:
            warnings.append(f"frames are resized to the policy's {pw}x{ph} input (lara-g1 policies report their "
                            f"model input size): not the view it was trained on")
            fixes.append(f"run the camera at the size the demonstrations were recorded at: {pw}x{ph} in the "
                         f"simulator (lara-sim --render {pw}x{ph}), the D455's 640x480 on the robot")
        else:
            value += (f"; the policy takes {pw}x{ph} (lara-g1 policies report their model input size: frames are "
                      f"resized to it, so the demonstrations must have been recorded at {w}x{h} too)")
    else:
        value += "; not compared with a policy (no --server)"
    if warnings:
        return CheckResult("camera", WARN, f"{value}; {'; '.join(warnings)}", "; ".join(fixes), data), last
    return CheckResult("camera", PASS, value, "", data), last


def check_server(client: PolicyClient, address: str) -> tuple[CheckResult, dict | None]:
    """ping and metadata answer, in this protocol version."""
    from lara_g1.runtime import protocol as P
    from lara_g1.runtime.client import ServerError, ServerTimeout

    try:
        client.ping()
        meta = client.metadata()
    except ServerTimeout:
        return CheckResult("server", FAIL, f"no answer from {address}",
                           f"start lara-serve on the policy computer (lara-serve --policy BUNDLE --bind "
                           f"{address} ...), check the address, the firewall and the network"), None
    except ServerError as exc:
        fix = ("pass the server's token with --token-file" if exc.code == P.UNAUTHORIZED
               else "check the server's log")
        return CheckResult("server", FAIL, f"{address} refused: {exc}", fix), None
    version = meta.get("protocol_version")
    if version != P.PROTOCOL_VERSION:
        return CheckResult("server", FAIL, f"{address} speaks protocol {version}, this robot {P.PROTOCOL_VERSION}",
                           "install the same lara-g1 version on both computers"), meta
    value = (f"{address}: {meta.get('model_id')} ({meta.get('engine')}), embodiment {meta.get('embodiment')}, "
             f"{meta.get('action_horizon')} actions per chunk, cameras "
             + ", ".join(f"{c} {hw[1]}x{hw[0]}" for c, hw in (meta.get("cameras") or {}).items()))
    return CheckResult("server", PASS, value, "", {"metadata": meta}), meta


def check_layout(meta: dict, emb: Embodiment, robot_cameras: Sequence[str] = ("head",)) -> CheckResult:
    """The served policy's joint layout and camera names are this robot's."""
    problems = []
    names = [str(n) for n in meta.get("joint_names") or []]
    if names != list(emb.joint_names):
        if len(names) != emb.dim:
            detail = f"{len(names)} joints, this robot has {emb.dim}"
        else:
            i = next(k for k, (a, b) in enumerate(zip(names, emb.joint_names)) if a != b)
            detail = f"joint {i} is {names[i]!r}, this robot's is {emb.joint_names[i]!r}"
        problems.append(f"the served policy's joint layout (embodiment {meta.get('embodiment')!r}: {detail}) "
                        f"is not this robot's {emb.name} layout")
    for key in ("state_dim", "action_dim"):
        if key in meta and int(meta[key]) != emb.dim and not problems:
            problems.append(f"its {key} is {meta[key]}, this robot's {emb.dim}")
    cameras = list(meta.get("cameras") or {})
    missing = [c for c in cameras if c not in robot_cameras]
    if missing or not cameras:
        problems.append(f"it wants cameras {cameras}, this robot has {list(robot_cameras)}")
    data = {"policy_embodiment": meta.get("embodiment"), "policy_joints": len(names), "robot_joints": emb.dim,
            "policy_cameras": cameras, "robot_cameras": list(robot_cameras)}
    if problems:
        return CheckResult("server.layout", FAIL, "; ".join(problems),
                           f"serve a policy trained for the {emb.name} embodiment with cameras "
                           f"{list(robot_cameras)} (lara-serve --policy BUNDLE), or name this robot's cameras in "
                           "its robot config (cameras:)", data)
    return CheckResult("server.layout", PASS, f"{emb.dim} joints of {emb.name}; cameras {cameras}", "", data)


def check_latency(client: PolicyClient, meta: dict, state: np.ndarray, frame: Frame | None = None,
                  calls: int = 20, policy_hz: float = 30.0, warmup_timeout_s: float = 60.0) -> CheckResult:
    """Inference round trips (p50/p99 over ``calls``, after one warm-up) against the chunk budget:
    the served steps per chunk times the action period (1 / ``policy_hz``). Fail: the median round
    trip exceeds it (every chunk late); warn: the p99 does (some late), or the median takes half."""
    from lara_g1.runtime.client import ServerError, ServerTimeout

    steps = int(meta.get("action_steps") or meta.get("action_horizon") or meta.get("horizon") or 0)
    budget_ms = 1e3 * steps / policy_hz
    images = {}
    for cam, (h, w) in (meta.get("cameras") or {}).items():
        images[cam] = frame.image if frame is not None else np.zeros((int(h), int(w), 3), np.uint8)
    data_in = {"state": np.asarray(state, dtype=np.float32), "images": images}
    rtts = []
    timeout = max(2.0, 4e-3 * budget_ms)
    try:
        reply = client.call("infer", data_in, timeout_s=warmup_timeout_s)
        shape = np.asarray(reply["actions"]).shape
        for _ in range(calls):
            t0 = time.perf_counter()
            client.call("infer", data_in, timeout_s=timeout)
            rtts.append(1e3 * (time.perf_counter() - t0))
    except ServerTimeout as exc:
        return CheckResult("server.latency", FAIL, f"infer: {exc} (after {len(rtts)} timed calls)",
                           "the server is far too slow or stuck: check its log and load")
    except ServerError as exc:
        return CheckResult("server.latency", FAIL, f"infer refused: {exc}", "check the server's log")
    p50, p99 = (float(v) for v in np.percentile(rtts, [50, 99]))
    data = {"p50_ms": p50, "p99_ms": p99, "calls": calls, "budget_ms": budget_ms, "steps": steps,
            "policy_hz": policy_hz, "actions_shape": list(shape)}
    value = (f"infer round trip p50 {p50:.0f} ms, p99 {p99:.0f} ms over {calls} calls; chunk budget "
             f"{budget_ms:.0f} ms ({steps} actions at {policy_hz:g} Hz)")
    fix = ("serve on a faster GPU or engine (lara-serve --engine trt), put the server on the robot's wired "
           "network (no Wi-Fi), or serve more actions per chunk")
    if steps <= 0:
        return CheckResult("server.latency", FAIL, f"{value}; the server announces no chunk length",
                           "update lara-serve", data)
    if p50 >= budget_ms:
        return CheckResult("server.latency", FAIL, value + ": the robot would run out of actions before the "
                           "next chunk arrives, chunk after chunk", fix, data)
    if p99 >= budget_ms:
        return CheckResult("server.latency", WARN, value + ": some chunks would arrive after the previous one "
                           "ran out (the robot holds, and fades out if it lasts)", fix, data)
    if p50 >= 0.5 * budget_ms:
        return CheckResult("server.latency", WARN, value + ": little headroom", fix, data)
    return CheckResult("server.latency", PASS, value, "", data)


def check_clock(client: PolicyClient, pings: int = 5, tolerance_s: float = 0.1) -> CheckResult:
    """The server's wall clock against this computer's, from ping's server_time (offset = server_time
    minus the midpoint of send and receive, from the ping with the shortest round trip)."""
    from lara_g1.runtime.client import ServerError, ServerTimeout

    best = None
    try:
        for _ in range(pings):
            t0 = time.time()
            server_time = client.ping()
            t1 = time.time()
            if best is None or t1 - t0 < best[1]:
                best = (server_time - 0.5 * (t0 + t1), t1 - t0)
    except (ServerTimeout, ServerError) as exc:
        return CheckResult("clock", FAIL, f"ping failed: {exc}", "see the server check")
    offset, rtt = best
    data = {"offset_ms": 1e3 * offset, "uncertainty_ms": 0.5e3 * rtt, "pings": pings}
    value = (f"server clock {1e3 * offset:+.1f} ms from this computer's (+/- {0.5e3 * rtt:.1f} ms, best of "
             f"{pings} pings)")
    if abs(offset) > tolerance_s + 0.5 * rtt:
        return CheckResult("clock", WARN, value, "sync both computers' clocks (chrony or NTP): logs and recordings "
                           "of the two will not line up (the control loop itself uses only this computer's "
                           "monotonic clock)", data)
    return CheckResult("clock", PASS, value, "", data)


# ---------------------------------------------------------------------------------------- runs
def fast_checks(config: G1Config, emb: Embodiment, meta: dict | None = None, *, window_s: float = 1.0,
                margin: float = 0.05, expected_hz: float = ROBOT_LOWSTATE_HZ,
                search: bool = True) -> list[CheckResult]:
    """The checks a command runs before it starts: rt/lowstate fresh, no other rt/arm_sdk publisher,
    joints in limits, hands and head answer, and (with ``meta``) the served policy's layout."""
    snap = listen(config, window_s)
    found = None
    if search and snap.error is None and snap.lowstate.count == 0:
        found = search_lowstate([config.domain_id, G1_DOMAIN, SIM_DOMAIN])
    results = [check_lowstate(snap, expected_hz, found), check_command_channel(snap, topics.ARM_SDK),
               check_joints(snap, config, emb, margin), check_hands(snap, config), check_head(snap, config, emb)]
    if meta is not None:
        results.append(check_layout(meta, emb, config.cameras))
    return results


def run_check(args: argparse.Namespace) -> int:
    """``lara-robot check``: every check, one line each; ``--json`` writes them all. Exit 1 on a fail."""
    import contextlib

    from lara_g1.core.embodiment import load_embodiment
    from lara_g1.robot.control import ControlConfig
    from lara_g1.robot.g1 import G1Config

    config = G1Config.load(args.robot_config or ("sim" if args.sim else "real"))
    if args.domain is not None or args.sim:
        config = config.replace(domain_id=SIM_DOMAIN if args.domain is None else args.domain)
    if args.interface is not None:
        config = config.replace(interface=args.interface)
    emb = load_embodiment(config.embodiment)
    policy_hz = float(ControlConfig.load(args.config).scheduler.policy_hz)
    print(f"lara-robot check: robot config {config.name}, {'simulated G1, ' if args.sim else ''}DDS domain "
          f"{config.domain_id} on {config.interface or 'the default interface'}"
          + (f", server {args.server}" if args.server else ", no --server"), flush=True)
    results: list[CheckResult] = []

    def report(result: CheckResult) -> CheckResult:
        results.append(result)
        print(result.line(), flush=True)
        return result

    with contextlib.ExitStack() as stack:
        client = meta = None
        if args.server:
            from lara_g1.robot.cli import _read_token
            from lara_g1.runtime.client import PolicyClient

            token = _read_token(args.token_file) if args.token_file else None
            client = PolicyClient(args.server, token=token, timeout_s=args.server_timeout)
            stack.callback(client.close)
            result, meta = check_server(client, args.server)
            report(result)
            if result.failed:
                meta = None
        if args.sim and not args.sim_running:
            from lara_g1.robot.sim.process import SimProcess

            size = next(iter((meta or {}).get("cameras", {}).values()), (224, 224))
            sim = SimProcess(args.task, domain_id=config.domain_id, render_size=(int(size[0]), int(size[1])),
                             seed=args.seed, interface=config.interface or "lo")
            stack.push(sim)
            sim.start()
        interfaces = network_interfaces()
        snap = listen(config, args.window)
        found = None
        if snap.error is None and snap.lowstate.count == 0:
            found = search_lowstate([config.domain_id, G1_DOMAIN, SIM_DOMAIN], args.window + 1.0, interfaces)
        report(check_interfaces(snap, interfaces))
        report(check_lowstate(snap, SIM_LOWSTATE_HZ if args.sim else ROBOT_LOWSTATE_HZ, found))
        report(check_mode_machine(snap))
        report(check_command_channel(snap, topics.ARM_SDK))
        report(check_command_channel(snap, topics.LOWCMD))
        report(check_joints(snap, config, emb, args.joint_margin))
        report(check_hands(snap, config))
        report(check_head(snap, config, emb))
        if args.sim:
            from lara_g1.robot.cameras import SimCamera

            camera, expected_fps = SimCamera(config.domain_id, config.interface or "lo"), None
        else:
            from lara_g1.robot.cameras import make_camera
            from lara_g1.robot.cli import _camera_config

            cam_cfg = _camera_config(args.camera_config)
            camera = make_camera(cam_cfg)
            expected_fps = float(cam_cfg.get("fps", 30)) if cam_cfg.get("type") == "realsense" else None
        cam_result, frame = check_camera(camera, (meta or {}).get("cameras"), config.cameras, args.window,
                                         expected_fps=expected_fps)
        report(cam_result)
        if meta is not None:
            layout = report(check_layout(meta, emb, config.cameras))
            if layout.failed:
                report(CheckResult("server.latency", SKIP, "not timed: the policy does not take this robot's "
                                   "state and cameras (see server.layout)", "see server.layout"))
            else:
                q = measured_pose(snap, config, emb)
                state = np.where(np.isfinite(q), q, emb.default_pose).astype(np.float32)
                report(check_latency(client, meta, state, frame, args.infer_calls, policy_hz))
            report(check_clock(client))
        else:
            why = "no --server" if not args.server else "the server did not answer"
            for name in ("server.layout", "server.latency", "clock"):
                report(CheckResult(name, SKIP, why, "pass --server tcp://HOST:PORT" if not args.server else ""))
    counts = {s: sum(r.status == s for r in results) for s in (PASS, WARN, FAIL, SKIP)}
    print("check: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        body = {"ok": counts[FAIL] == 0, "counts": counts, "robot_config": config.name, "sim": bool(args.sim),
                "domain": config.domain_id, "interface": config.interface, "server": args.server,
                "checks": [r.to_dict() for r in results]}
        args.json.write_text(json.dumps(body, indent=2) + "\n")
    return 1 if counts[FAIL] else 0


def _probe_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lara_g1.robot.preflight",
                                description="count rt/lowstate samples per DDS domain on one interface")
    p.add_argument("--probe", required=True, metavar="INTERFACE")
    p.add_argument("--domains", default="0,1")
    p.add_argument("--seconds", type=float, default=1.0)
    args = p.parse_args(argv)
    domains = [int(d) for d in args.domains.split(",") if d.strip()]
    print(json.dumps(_probe(args.probe, domains, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main())
