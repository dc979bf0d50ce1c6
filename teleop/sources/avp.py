"""Apple Vision Pro tracking over the ``avp-stream`` package (Tracking Streamer visionOS app, gRPC).

``avp-stream`` is an optional dependency (``pip install 'lara-g1[teleop]'``), imported only when
this source connects. Its ``VisionProStreamer`` receives the app's stream on a background thread
and replaces ``streamer.latest`` (a dict: ``head`` [1,4,4], ``left_wrist``/``right_wrist``
[1,4,4] in a Z-up world frame, ``left_fingers``/``right_fingers`` [25,4,4] relative to the wrist)
with a new object per update. This source polls that attribute, stamps each new update with the
local monotonic clock, and converts it to a :class:`TrackingSample`.

Connection loss: the package's stream thread swallows errors and simply stops updating, so loss
is detected here: no new update for ``stale_after_s`` marks the source lost (reported by
:meth:`AvpSource.status` and logged once); updates flowing again clear it. The session treats a
stale sample as no command, so the safety filter holds and then fades the arms.

Head axes: recent avp-stream versions rotate the head frame to x right, y forward, z up; older
ones leave visionOS's x right, y up, -z forward. The first sample decides which (the operator's
head is upright at start) and both become this project's x forward, y left, z up.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from lara_g1.teleop.sources.base import HAND_JOINTS, TrackingError, TrackingSample, TrackingSource

log = logging.getLogger(__name__)

AVP_PORT = 12345
# Columns: this project's head axes (forward, left, up) in the package's head frame.
_HEAD_AXES = {
    "z_up": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),    # x right, y fwd, z up
    "y_up": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]),   # x right, y up, -z fwd
}


def _import_streamer() -> Callable[..., Any]:
    try:
        from avp_stream import VisionProStreamer
    except ImportError as exc:
        raise TrackingError("the Vision Pro source needs the avp-stream package: "
                            "pip install 'lara-g1[teleop]'") from exc
    return VisionProStreamer


def detect_head_axes(head: np.ndarray) -> str:
    """Which of the package's head conventions an upright head pose uses ('z_up' or 'y_up')."""
    up_z = abs(float(head[2, 2]))
    up_y = abs(float(head[2, 1]))
    return "z_up" if up_z >= up_y else "y_up"


def convert_update(update: Any, head_axes: str, stamp: float) -> TrackingSample:
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
    head[:3, :3] = head[:3, :3] @ _HEAD_AXES[head_axes]
    return TrackingSample(stamp, head, lw, rw, lf, rf).validate()


class AvpSource(TrackingSource):
    name = "avp"

    def __init__(self, ip: str, *, stale_after_s: float = 0.25, poll_hz: float = 500.0,
                 streamer_factory: Callable[..., Any] | None = None):
        if not ip:
            raise TrackingError("the Vision Pro source needs the headset's IP address (--avp-ip)")
        self.ip = ip
        self.stale_after_s = float(stale_after_s)
        self._period = 1.0 / float(poll_hz)
        self._factory = streamer_factory
        self._streamer: Any = None
        self._lock = threading.Lock()
        self._sample: TrackingSample | None = None
        self._head_axes: str | None = None
        self._updates = 0
        self._lost = False
        self._losses = 0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def connect(self, timeout_s: float = 10.0) -> None:
        factory = self._factory or _import_streamer()
        box: dict[str, Any] = {}

        def build() -> None:   # older VisionProStreamer constructors block until data flows
            try:
                box["streamer"] = factory(ip=self.ip, record=False)
            except Exception as exc:  # noqa: BLE001 - reported to the caller below
                box["error"] = exc

        threading.Thread(target=build, name="avp-connect", daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "error" in box:
                raise TrackingError(f"cannot open the Vision Pro stream at {self.ip}:{AVP_PORT}: "
                                    f"{box['error']}") from box["error"]
            streamer = box.get("streamer")
            if streamer is not None and getattr(streamer, "latest", None) is not None:
                self._streamer = streamer
                break
            time.sleep(0.01)
        else:
            raise TrackingError(f"no tracking data from the Vision Pro at {self.ip}:{AVP_PORT} within "
                                f"{timeout_s:.0f} s: is the Tracking Streamer app open and on the same network?")
        self._poll_once()
        self._thread = threading.Thread(target=self._run, name="avp-poll", daemon=True)
        self._thread.start()

    def _poll_once(self, last: Any = None) -> Any:
        update = getattr(self._streamer, "latest", None)
        now = time.monotonic()
        if update is not None and update is not last:
            try:
                if self._head_axes is None:
                    self._head_axes = detect_head_axes(np.asarray(update["head"]).reshape(4, 4))
                    log.info("avp: head frame convention %s", self._head_axes)
                sample = convert_update(update, self._head_axes, now)
            except TrackingError as exc:
                self._error = str(exc)
                log.warning("avp: %s", exc)
                return update
            with self._lock:
                self._sample = sample
                self._updates += 1
                if self._lost:
                    self._lost = False
                    log.warning("avp: tracking is back")
            return update
        with self._lock:
            if self._sample is not None and not self._lost and now - self._sample.timestamp > self.stale_after_s:
                self._lost = True
                self._losses += 1
                log.warning("avp: tracking lost (no update from %s for %.2f s)", self.ip, now - self._sample.timestamp)
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
            return {"source": self.name, "ip": self.ip, "updates": self._updates, "lost": self._lost,
                    "losses": self._losses, "age_s": age, "error": self._error}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        streamer, self._streamer = self._streamer, None
        for method in ("stop", "cleanup"):
            fn = getattr(streamer, method, None)
            if callable(fn):
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - closing must not raise
                    log.debug("avp: %s() failed: %s", method, exc)
                break
