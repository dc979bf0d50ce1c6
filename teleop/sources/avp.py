"""Apple Vision Pro tracking over the ``avp-stream`` package (Tracking Streamer visionOS app, gRPC).

``avp-stream`` (2.50 or later: the current Tracking Streamer app, 2.50 and later, checks the
library's version and sends nothing to older ones) is an optional dependency
(``pip install 'lara-g1[teleop]'``), imported only when this source connects. Its
``VisionProStreamer`` turns each of the app's gRPC updates into ``streamer.latest`` (a dict:
``head`` [1,4,4], ``left_wrist``/``right_wrist`` [1,4,4] in a Z-up world frame,
``left_fingers``/``right_fingers`` [25,4,4] relative to the wrist), a new object per update. This
source polls that attribute, stamps each new update with the local monotonic clock, and converts
it to a :class:`TrackingSample`.

The package is used through a subclass that contains its side effects (all verified in avp-stream
2.50 and 2.51, ``avp_stream/streamer.py``):

- importing it replaces the process's SIGINT/SIGTERM handlers: they are restored at once;
- its constructor blocks until data flows (for ever if none does) and its stream thread retries
  for minutes after an error and cannot be stopped: here the constructor returns at once, and the
  stream runs on a thread of ours, with the package's own discovery request, generated stubs and
  update processing, that reconnects after errors, restarts a stalled stream (:meth:`reconnect`)
  and stops on :meth:`AvpSource.close`;
- it starts an HTTP info server on 0.0.0.0:8888 (WebRTC discovery; unused here): close() shuts it
  down;
- it prints its messages to stdout: they go to logging (``avp_stream`` messages at INFO/DEBUG).

The address must be an IPv4 address: avp-stream takes anything else (a host name, ``localhost``,
an IPv6 address) for a room code and switches to its cross-network mode (WebRTC through an
internet signalling server), which this source does not use.

Connection loss: no new update for ``stale_after_s`` marks the source lost (reported by
:meth:`AvpSource.status` and logged once); updates flowing again clear it. A loss that lasts
``reconnect_after_s`` restarts the stream (a half-open connection never errors). The session
treats a stale sample as no command, so the safety filter holds and then fades the arms.

Head axes: every avp-stream release (0.1 to 2.51) rotates the head frame to x right, y forward,
z up (``rotate_head`` of visionOS's x right, y up, -z forward); it becomes this project's x
forward, y left, z up. There is no auto-detection: the operator's head pose at connect decides
nothing.

Hands: until the headset has seen a hand, the app sends an identity wrist matrix (and skeleton)
for it; such a hand is marked not tracked (``TrackingSample.left_tracked``/``right_tracked``):
the calibration waits for both hands and the retargeter holds an untracked hand's arm.
"""
from __future__ import annotations

import importlib.metadata
import ipaddress
import logging
import os
import re
import signal
import threading
import time
from typing import Any, Callable

import numpy as np

from lara_g1.teleop.sources.base import HAND_JOINTS, TrackingError, TrackingSample, TrackingSource

log = logging.getLogger(__name__)

AVP_PORT = 12345                       # the Tracking Streamer app's gRPC port (fixed by the app)
MIN_VERSION = (2, 50)                  # the oldest avp-stream the current app accepts
SUPPORTED = "avp-stream>=2.50,<3"      # what the teleop extra installs
APP = "the Tracking Streamer app (2.50 and later)"
# Columns: this project's head axes (forward, left, up) in avp-stream's head frame (x right, y
# forward, z up).
HEAD_AXES = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
# A wrist the app has not seen: its identity matrix after avp-stream's Y-up -> Z-up change.
_UNSEEN_WRIST = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


# ----------------------------------------------------------------------------- checks
def validate_ip(ip: str | None) -> str:
    """The Vision Pro's address as given (``--avp-ip``); raises :class:`TrackingError` unless it
    is a dotted IPv4 address (the only form that keeps avp-stream in its same-network mode)."""
    if not ip:
        raise TrackingError("the Vision Pro source needs the headset's IP address (--avp-ip), "
                            "as the Tracking Streamer app shows it")
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        addr = None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise TrackingError(
            f"--avp-ip {ip!r} is not an IPv4 address: give the Vision Pro's address as the Tracking "
            "Streamer app shows it (e.g. 192.168.1.42). avp-stream takes anything else (a host name, "
            "'localhost', an IPv6 address) for a room code and switches to its cross-network mode "
            "(WebRTC through a signalling server on the internet), which lara-teleop does not use")
    return ip


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("avp-stream")
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def check_version(version: str | None) -> str:
    """``version`` if the current app accepts it; :class:`TrackingError` naming the fix otherwise."""
    if version is None:
        raise TrackingError(f"the Vision Pro source needs the avp-stream package ({SUPPORTED}): "
                            "pip install 'lara-g1[teleop]'")
    if _version_tuple(version) < MIN_VERSION:
        raise TrackingError(
            f"avp-stream {version} is installed, but {APP} refuses avp-stream below "
            f"{'.'.join(map(str, MIN_VERSION))} (it checks the library version and sends no tracking "
            f"data): pip install '{SUPPORTED}'")
    return version


def _import_avp_stream() -> Any:
    """``avp_stream.streamer``, imported with the process's SIGINT/SIGTERM handlers kept."""
    version = check_version(_installed_version())
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")   # gRPC's own log lines would cut the status line
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        import avp_stream.streamer as module
    except ImportError as exc:
        raise TrackingError(f"cannot import avp-stream {version} ({exc}): "
                            "pip install 'lara-g1[teleop]'") from exc
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in saved.items():
                if handler is not None and signal.getsignal(sig) is not handler:
                    signal.signal(sig, handler)       # avp-stream installs its own on import
    if getattr(module, "LIBRARY_VERSION_CODE", 0) < 10000 * MIN_VERSION[0] + 100 * MIN_VERSION[1]:
        raise TrackingError(f"avp-stream {version} sends no library version code: {APP} refuses it; "
                            f"pip install '{SUPPORTED}'")
    return module


def _import_streamer() -> Callable[..., Any]:
    """The contained streamer class (see the module docstring); raises :class:`TrackingError`."""
    return _streamer_class(_import_avp_stream())


_CLASSES: dict[int, type] = {}


def _streamer_class(module: Any) -> type:
    cached = _CLASSES.get(id(module))
    if cached is not None:
        return cached
    import grpc
    from avp_stream.grpc_msg import handtracking_pb2, handtracking_pb2_grpc

    base = module.VisionProStreamer
    needed = ("_process_hand_update", "_start_hand_tracking", "_start_info_server", "_log", "cleanup",
              "get_local_ip")
    missing = [n for n in needed if not callable(getattr(base, n, None))]
    if missing:
        raise TrackingError(f"avp-stream {_installed_version()}: VisionProStreamer lacks {missing}; "
                            f"lara-teleop works with {SUPPORTED} as released up to 2.51")

    class ContainedStreamer(base):
        """avp-stream's VisionProStreamer for one gRPC hand-tracking stream, side effects contained."""

        def __init__(self, ip: str, port: int = AVP_PORT):
            self._lara_port = int(port)
            self._lara_stop = threading.Event()
            self._lara_lock = threading.Lock()
            self._lara_call: Any = None
            self._lara_thread: threading.Thread | None = None
            self.stream_error: str | None = None      # the last gRPC error, for the user
            super().__init__(ip=ip, record=False)

        def _log(self, message: str, force: bool = False) -> None:   # its prints, to logging
            log.log(logging.INFO if force else logging.DEBUG, "avp-stream: %s", str(message).strip())

        def _start_info_server(self, port: int = 8888) -> None:
            super()._start_info_server(port)
            deadline = time.monotonic() + 0.5        # it binds on its own thread: wait to stop it later
            while getattr(self, "info_server", None) is None and time.monotonic() < deadline:
                time.sleep(0.002)

        def _start_hand_tracking(self) -> None:      # the package's blocks until data flows
            self._lara_thread = threading.Thread(target=self._lara_stream, name="avp-stream", daemon=True)
            self._lara_thread.start()

        def _lara_request(self) -> Any:
            """The discovery request of avp-stream's own ``VisionProStreamer.stream()``: where we
            are (our address on the route to the headset) and the library version code."""
            request = handtracking_pb2.HandUpdate()
            parts = [float(p) for p in self.get_local_ip().split(".")]
            request.Head.m00 = 888.0
            request.Head.m01, request.Head.m02, request.Head.m03, request.Head.m10 = parts
            request.Head.m30 = float(module.LIBRARY_VERSION_CODE)
            return request

        def _lara_stream(self) -> None:
            delay = 0.2
            while not self._lara_stop.is_set():
                channel = grpc.insecure_channel(f"{self.ip}:{self._lara_port}")
                try:
                    call = handtracking_pb2_grpc.HandTrackingServiceStub(channel).StreamHandUpdates(
                        self._lara_request())
                    with self._lara_lock:
                        self._lara_call = call
                    if self._lara_stop.is_set():
                        call.cancel()
                    for response in call:
                        self._process_hand_update(response, source="grpc")
                        delay = 0.2
                    self.stream_error = "the Vision Pro ended the stream"
                except grpc.RpcError as exc:
                    if self._lara_stop.is_set():
                        break
                    code = exc.code() if callable(getattr(exc, "code", None)) else None
                    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
                    self.stream_error = (f"{code.name}: {details}" if code is not None else str(details))
                except Exception as exc:  # noqa: BLE001 - reported, and the stream is retried
                    self.stream_error = f"{type(exc).__name__}: {exc}"
                finally:
                    with self._lara_lock:
                        self._lara_call = None
                    channel.close()
                if self._lara_stop.is_set():
                    break
                log.debug("avp: stream to %s ended (%s); reconnecting in %.1f s", self.ip, self.stream_error, delay)
                self._lara_stop.wait(delay)
                delay = min(2.0, 2 * delay)

        def reconnect(self) -> None:
            """End the current stream (a stalled one); the stream thread opens a new one."""
            with self._lara_lock:
                call = self._lara_call
            if call is not None:
                call.cancel()

        def close(self, timeout_s: float = 2.0) -> None:
            """Stop the stream thread and the info server, then the package's own cleanup."""
            self._lara_stop.set()
            self.reconnect()
            if self._lara_thread is not None:
                self._lara_thread.join(timeout_s)
                if self._lara_thread.is_alive():
                    log.warning("avp: the stream thread did not stop within %.1f s", timeout_s)
            server, self.info_server = getattr(self, "info_server", None), None
            if server is not None:
                server.shutdown()
                server.server_close()
            self.cleanup()

    _CLASSES[id(module)] = ContainedStreamer
    return ContainedStreamer


# ----------------------------------------------------------------------------- conversion
def hand_tracked(wrist: np.ndarray, fingers: np.ndarray) -> bool:
    """False for a hand the headset has not seen: the app sends an identity wrist matrix (which
    avp-stream's axis change turns into its Y-up -> Z-up matrix) and an identity skeleton."""
    if np.allclose(wrist, _UNSEEN_WRIST, atol=1e-6) or np.allclose(wrist, np.eye(4), atol=1e-6):
        return False
    spread = np.ptp(np.asarray(fingers)[:, :3, 3], axis=0)
    return bool(np.max(spread) > 1e-3)          # a real skeleton spans centimetres


def convert_update(update: Any, stamp: float) -> TrackingSample:
    """One avp-stream update (dict-like) -> :class:`TrackingSample` (raises TrackingError)."""
    try:
        head = np.asarray(update["head"], dtype=np.float64).reshape(4, 4)
        lw = np.asarray(update["left_wrist"], dtype=np.float64).reshape(4, 4)
        rw = np.asarray(update["right_wrist"], dtype=np.float64).reshape(4, 4)
        lf = np.asarray(update["left_fingers"], dtype=np.float64)[:HAND_JOINTS]
        rf = np.asarray(update["right_fingers"], dtype=np.float64)[:HAND_JOINTS]
    except (KeyError, TypeError, ValueError) as exc:
        raise TrackingError(f"unexpected avp-stream update: {exc!r}") from None
    head = head.copy()
    head[:3, :3] = head[:3, :3] @ HEAD_AXES
    sample = TrackingSample(stamp, head, lw, rw, lf, rf).validate()
    sample.left_tracked = hand_tracked(lw, lf)
    sample.right_tracked = hand_tracked(rw, rf)
    return sample


# ----------------------------------------------------------------------------- the source
class AvpSource(TrackingSource):
    name = "avp"

    def __init__(self, ip: str, *, stale_after_s: float = 0.25, reconnect_after_s: float = 2.0,
                 poll_hz: float = 500.0, streamer_factory: Callable[..., Any] | None = None):
        self.ip = validate_ip(ip)
        self.stale_after_s = float(stale_after_s)
        self.reconnect_after_s = float(reconnect_after_s)
        self._period = 1.0 / float(poll_hz)
        self._factory = streamer_factory
        self._streamer: Any = None
        self._lock = threading.Lock()
        self._sample: TrackingSample | None = None
        self._updates = 0
        self._lost = False
        self._losses = 0
        self._reconnected_at = 0.0
        self._tracked = {"left": None, "right": None}
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        return f"the Vision Pro at {self.ip}"

    def connect(self, timeout_s: float = 10.0) -> None:
        if self._factory is not None:   # a stand-in (tests)
            self._streamer = self._factory(ip=self.ip, record=False)
        else:
            self._streamer = _import_streamer()(self.ip)
        streamer = self._streamer
        deadline = time.monotonic() + timeout_s
        while getattr(streamer, "latest", None) is None:
            if time.monotonic() > deadline:
                detail = getattr(streamer, "stream_error", None)
                self.close()
                raise TrackingError(
                    f"no tracking data from {self.describe()}:{AVP_PORT} within {timeout_s:.0f} s"
                    + (f" (gRPC: {detail})" if detail else "")
                    + f": is the Tracking Streamer app open and started, and this computer on the same "
                    f"network? {APP} needs avp-stream 2.50 or later (installed: "
                    f"{_installed_version() or 'none'})")
            time.sleep(0.01)
        self._stop.clear()
        self._poll_once()
        self._thread = threading.Thread(target=self._run, name="avp-poll", daemon=True)
        self._thread.start()

    def _poll_once(self, last: Any = None) -> Any:
        streamer = self._streamer
        update = getattr(streamer, "latest", None)
        now = time.monotonic()
        if update is not None and update is not last:
            try:
                sample = convert_update(update, now)
            except TrackingError as exc:
                self._error = str(exc)
                log.warning("avp: %s", exc)
                return update
            for side in ("left", "right"):
                seen = sample.tracked(side)
                if self._tracked[side] is not None and seen != self._tracked[side]:
                    log.warning("avp: the %s hand is %s", side, "tracked again" if seen else
                                "not tracked (out of the headset's view): its arm holds")
                self._tracked[side] = seen
            with self._lock:
                self._sample = sample
                self._updates += 1
                if self._lost:
                    self._lost = False
                    log.warning("avp: tracking is back")
            return update
        with self._lock:
            if self._sample is None:
                return last
            age = now - self._sample.timestamp
            if not self._lost and age > self.stale_after_s:
                self._lost = True
                self._losses += 1
                log.warning("avp: tracking lost (no update from %s for %.2f s)", self.ip, age)
            restart = (self._lost and age > self.reconnect_after_s
                       and now - self._reconnected_at > self.reconnect_after_s)
            if restart:
                self._reconnected_at = now
        if restart and callable(getattr(streamer, "reconnect", None)):
            log.info("avp: no update for %.1f s: restarting the stream", age)
            streamer.reconnect()
        return last

    def _run(self) -> None:
        last = getattr(self._streamer, "latest", None)
        while not self._stop.wait(self._period):
            last = self._poll_once(last)

    def latest(self) -> TrackingSample | None:
        with self._lock:
            return self._sample

    @property
    def lost(self) -> bool:
        with self._lock:
            return self._lost

    def status(self) -> dict:
        with self._lock:
            age = None if self._sample is None else time.monotonic() - self._sample.timestamp
            hands = dict(self._tracked)
            return {"source": self.name, "ip": self.ip, "updates": self._updates, "lost": self._lost,
                    "losses": self._losses, "age_s": age, "hands_tracked": hands,
                    "error": self._error or getattr(self._streamer, "stream_error", None)}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        streamer, self._streamer = self._streamer, None
        if streamer is None:
            return
        for method in ("close", "stop", "cleanup"):
            fn = getattr(streamer, method, None)
            if callable(fn):
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - closing must not raise
                    log.debug("avp: %s() failed: %s", method, exc)
                break
