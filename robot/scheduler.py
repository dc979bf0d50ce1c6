"""Asynchronous execution of action chunks (docs/CONTROL.md, "The chunk scheduler").

The policy returns chunks of H actions spaced at the policy rate (30 Hz): action ``k`` of a
chunk computed from an observation taken at ``t_obs`` is the target for ``t_obs + k / policy_hz``.
:class:`ChunkScheduler` turns the chunks into a target at any instant, for the faster command
rate (>= 100 Hz):

- actions whose time has passed when the chunk arrives (the measured latency) are dropped,
  and a chunk that arrives entirely stale is dropped whole;
- a chunk with any non-finite value is refused whole (:class:`SchedulerError`);
- a new chunk is cross-faded linearly into the one it overlaps, over ``crossfade_s``;
- between two actions the target is linearly interpolated; past the last action it holds.

:class:`ChunkRequester` runs the inference in a background thread and asks for the next chunk
before the current one runs out (``should_request``), so the control loop never waits on the
server. The scheduler is pure logic on an injectable clock; the requester takes any
``infer(observation) -> actions`` callable (the control loop binds the ZMQ client).
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from typing import Any, Callable

import numpy as np
from pydantic import Field

from lara_g1.core.config import ConfigModel, config_dataclass
from lara_g1.core.errors import ConfigError, LaraError

log = logging.getLogger(__name__)


class SchedulerError(LaraError, ValueError):
    """A scheduler setting or a chunk that is not acceptable."""


class SchedulerConfigError(SchedulerError, ConfigError):
    """A scheduler setting that is not acceptable (a control config's ``scheduler:`` section)."""


@config_dataclass
class SchedulerConfig(ConfigModel):
    """Chunk scheduling (``scheduler:`` in ``configs/control/*.yaml``). Times in seconds."""

    config_error = SchedulerConfigError

    policy_hz: float = Field(30.0, gt=0.0)
    # Ask for the next chunk when the current one has at most this much left beyond the
    # measured latency. With an 8-step 30 Hz chunk (0.27 s), 0.2 keeps one request in flight
    # at all times, so a lost server shows within one inference time.
    request_ahead_s: float = Field(0.2, ge=0.0)
    crossfade_s: float = Field(0.1, ge=0.0)
    latency_window: int = Field(50, ge=1)


class _Chunk:
    """One chunk on the time axis: action k at ``t0 + k * dt``, starting at ``first``."""

    def __init__(self, actions: np.ndarray, t0: float, dt: float, first: int, stamp: float) -> None:
        self.actions = actions
        self.t0 = t0
        self.dt = dt
        self.first = first          # index of the first action that was not stale on arrival
        self.stamp = stamp          # the observation stamp it was computed from

    @property
    def end(self) -> float:
        return self.t0 + (len(self.actions) - 1) * self.dt

    def sample(self, t: float) -> np.ndarray:
        s = (t - self.t0) / self.dt
        last = len(self.actions) - 1
        if s <= self.first:
            return self.actions[self.first]
        if s >= last:
            return self.actions[last]
        i = int(math.floor(s))
        w = s - i
        return (1.0 - w) * self.actions[i] + w * self.actions[i + 1]


class _CrossFade:
    """``older`` fading linearly into ``newer`` over ``[t_a, t_b]``."""

    def __init__(self, older: _Chunk | _CrossFade, newer: _Chunk, t_a: float, t_b: float) -> None:
        self.older, self.newer, self.t_a, self.t_b = older, newer, t_a, t_b

    @property
    def end(self) -> float:
        return self.newer.end

    @property
    def stamp(self) -> float:
        return self.newer.stamp

    def sample(self, t: float) -> np.ndarray:
        if t >= self.t_b:
            return self.newer.sample(t)
        w = min(1.0, max(0.0, (t - self.t_a) / (self.t_b - self.t_a)))
        return (1.0 - w) * self.older.sample(t) + w * self.newer.sample(t)


def percentile_ms(values: Any, q: float) -> float | None:
    """The ``q``-th percentile of seconds, in ms (None without data)."""
    arr = np.asarray(list(values), dtype=np.float64)
    return None if arr.size == 0 else float(np.percentile(arr, q) * 1e3)


class ChunkScheduler:
    """Action chunks in, interpolated targets out (thread-safe; clock injectable)."""

    def __init__(self, config: SchedulerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._dt = 1.0 / config.policy_hz
        self._lock = threading.Lock()
        self._active: _Chunk | _CrossFade | None = None
        self._last_received: float | None = None
        self._latencies: collections.deque[float] = collections.deque(maxlen=config.latency_window)
        self._latency_log: collections.deque[float] = collections.deque(maxlen=10000)  # for stats()
        self._horizon: int | None = None
        self._last_chunk: tuple[np.ndarray, float, float] | None = None   # (actions, obs stamp, arrival)
        self.chunks_accepted = 0
        self.chunks_dropped = 0
        self.actions_dropped = 0

    def add_chunk(self, actions: np.ndarray, obs_stamp: float, now: float | None = None) -> bool:
        """Add a chunk computed from the observation taken at ``obs_stamp``.

        Returns False when every action was already stale on arrival (the chunk is dropped).
        """
        now = self._clock() if now is None else now
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] < 1:
            raise SchedulerError(f"a chunk must be [H, dim] with H >= 1, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            # Dropped whole, so the previous plan goes on; the safety filter would reject the
            # commands anyway, but only after they had spoiled the cross-fade.
            raise SchedulerError(f"a chunk with {int(np.sum(~np.isfinite(a)))} non-finite values")
        with self._lock:
            latency = max(0.0, now - obs_stamp)
            self._latencies.append(latency)
            self._latency_log.append(latency)
            self._horizon = a.shape[0]
            # Action k is stale when its time t_obs + k*dt has passed on arrival.
            stale = min(a.shape[0], int(math.ceil(latency / self._dt - 1e-9)))
            if stale >= a.shape[0]:
                self.chunks_dropped += 1
                self.actions_dropped += a.shape[0]
                log.debug("scheduler: dropped a chunk %.0f ms old", latency * 1e3)
                return False
            self.actions_dropped += stale
            chunk = _Chunk(a, obs_stamp, self._dt, stale, obs_stamp)
            old = self._active
            if old is not None and old.end > now and self.config.crossfade_s > 0:
                t_b = now + min(self.config.crossfade_s, old.end - now)
                self._active = _CrossFade(old, chunk, now, t_b)
            else:
                self._active = chunk
            self._last_received = now
            self._last_chunk = (a, obs_stamp, now)
            self.chunks_accepted += 1
            return True

    def target(self, now: float | None = None) -> np.ndarray | None:
        """The action for time ``now`` (float32), or None before the first chunk."""
        now = self._clock() if now is None else now
        with self._lock:
            active = self._active
            if active is None:
                return None
            if isinstance(active, _CrossFade) and now >= active.t_b:
                self._active = active = active.newer   # the old chunk is no longer needed
            return active.sample(now).astype(np.float32)

    @property
    def last_received(self) -> float | None:
        """When the newest accepted chunk arrived: the freshness of the commands it yields.

        A chunk dropped as stale does not count: a server that only sends stale chunks is as
        good as gone, and the safety filter's command watchdog must see that."""
        return self._last_received

    @property
    def last_chunk(self) -> tuple[np.ndarray, float, float] | None:
        """The newest accepted chunk as the policy sent it: (actions [H, dim], the observation
        stamp it was computed from, when it arrived); None before the first."""
        return self._last_chunk

    @property
    def source_stamp(self) -> float | None:
        """The observation stamp behind the newest chunk."""
        active = self._active
        return None if active is None else active.stamp

    def latency_estimate(self) -> float:
        """Median observation-to-arrival latency over the recent chunks (s); 0 before any."""
        with self._lock:
            return float(np.median(self._latencies)) if self._latencies else 0.0

    def remaining(self, now: float | None = None) -> float:
        """Seconds of actions left in the current chunk (0 when none or exhausted)."""
        now = self._clock() if now is None else now
        active = self._active
        return 0.0 if active is None else max(0.0, active.end - now)

    def should_request(self, now: float | None = None) -> bool:
        """Whether the next chunk must be requested now to arrive before this one runs out."""
        now = self._clock() if now is None else now
        return self.remaining(now) <= self.config.request_ahead_s + self.latency_estimate()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lat = list(self._latency_log)
        return {
            "chunks": self.chunks_accepted,
            "chunks_dropped": self.chunks_dropped,
            "actions_dropped": self.actions_dropped,
            "horizon": self._horizon,
            "chunk_latency_ms_p50": percentile_ms(lat, 50),
            "chunk_latency_ms_p99": percentile_ms(lat, 99),
        }


class ChunkRequester:
    """Background thread: observe → infer → :meth:`ChunkScheduler.add_chunk`, ahead of time.

    ``observe() -> (observation, stamp)`` gives the latest observation and when it was taken;
    ``infer(observation) -> actions [H, dim]`` asks the policy. Errors from ``infer`` (server
    gone, timeouts) are counted and retried after ``retry_s``; the safety filter's command
    watchdog is what reacts to them.
    """

    def __init__(self, scheduler: ChunkScheduler, observe: Callable[[], tuple[Any, float]],
                 infer: Callable[[Any], np.ndarray], *, clock: Callable[[], float] = time.monotonic,
                 poll_s: float = 0.002, retry_s: float = 0.05) -> None:
        self.scheduler = scheduler
        self._observe = observe
        self._infer = infer
        self._clock = clock
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.requests = 0
        self.round_trips: collections.deque[float] = collections.deque(maxlen=200)  # infer() calls, s
        self.errors: collections.Counter[str] = collections.Counter()
        self.last_error: str | None = None

    def start(self) -> "ChunkRequester":
        self._thread = threading.Thread(target=self._run, name="chunk-requester", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "ChunkRequester":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.scheduler.should_request(self._clock()):
                self._stop.wait(self._poll_s)
                continue
            try:
                observation, stamp = self._observe()
                self.requests += 1
                t_call = self._clock()
                actions = self._infer(observation)
                self.round_trips.append(self._clock() - t_call)
            except Exception as exc:  # noqa: BLE001 - any failure means "no chunk"; the watchdog acts
                kind = type(exc).__name__
                if self.errors[kind] == 0 or self.last_error != kind:
                    log.warning("chunk request failed (%s: %s); retrying", kind, exc)
                self.errors[kind] += 1
                self.last_error = kind
                self._stop.wait(self._retry_s)
                continue
            if self.last_error is not None:
                log.warning("chunk requests succeed again")
                self.last_error = None
            try:
                self.scheduler.add_chunk(actions, stamp, self._clock())
            except SchedulerError as exc:
                self.errors["bad_chunk"] += 1
                log.warning("dropped a malformed chunk: %s", exc)
