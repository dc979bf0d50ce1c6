"""Serving metrics: one object the server writes and the dashboard (and /metrics) reads.

Rolling percentiles come from a bounded window of recent samples per stage; Prometheus
histograms (own registry, buckets that resolve 1-100 ms) carry the same observations for scraping.
The object also keeps the last camera frame and the last action chunk for the dashboard page.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds. Dense between 1 and 100 ms, where a served chunk's latency lives.
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04,
                   0.05, 0.06, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class ServingMetrics:
    """Thread-safe counters, rolling latency windows and the last observation/action.

    ``window``: samples kept per stage for percentiles; ``rate_window_s``: the span the request
    rate is averaged over. ``history_s`` seconds of per-second latency summaries feed the chart.
    """

    def __init__(self, window: int = 2048, rate_window_s: float = 10.0, history_s: int = 120):
        self._lock = threading.Lock()
        self._window = window
        self._rate_window_s = rate_window_s
        self._stages: dict[str, collections.deque] = {}
        self._stamps: collections.deque = collections.deque()
        self._errors: collections.Counter = collections.Counter()
        self._requests: collections.Counter = collections.Counter()
        self._history: collections.deque = collections.deque(maxlen=history_s)
        self._current_second: tuple[int, list[float]] | None = None
        self.started = time.time()
        self._started_mono = time.monotonic()
        self.connected_clients = 0
        self.last_frame: tuple[str, np.ndarray | bytes] | None = None  # (camera, RGB array or JPEG bytes)
        self.last_actions: np.ndarray | None = None  # [H, dim]
        self.last_batch_size = 0
        self.engine_calls = 0
        self.batched_observations = 0

        self.registry = CollectorRegistry()
        self._p_latency = Histogram("lara_serve_latency_seconds", "Latency of served infer requests by stage",
                                    ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._p_requests = Counter("lara_serve_requests", "Requests answered, by endpoint", ["endpoint"],
                                   registry=self.registry)
        self._p_errors = Counter("lara_serve_errors", "Error replies, by code", ["code"], registry=self.registry)
        self._p_batch = Histogram("lara_serve_batch_size", "Observations per engine call",
                                  buckets=BATCH_BUCKETS, registry=self.registry)
        self._p_clients = Gauge("lara_serve_connected_clients", "Open client connections", registry=self.registry)

    # ------------------------------------------------------------------------------- writers

    def record_request(self, endpoint: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._requests[endpoint] += 1
            self._stamps.append(now)
            self._trim(now)
        self._p_requests.labels(endpoint).inc()

    def record_error(self, code: str) -> None:
        with self._lock:
            self._errors[code] += 1
        self._p_errors.labels(code).inc()

    def record_latency(self, timing_ms: Mapping[str, float]) -> None:
        """One served request's per-stage timings in ms (must include ``server``, the total)."""
        now = int(time.monotonic() - self._started_mono)  # whole seconds since start
        with self._lock:
            for stage, ms in timing_ms.items():
                self._stages.setdefault(stage, collections.deque(maxlen=self._window)).append(float(ms))
            total = float(timing_ms.get("server", 0.0))
            if self._current_second is None or self._current_second[0] != now:
                self._close_second()
                self._current_second = (now, [])
            self._current_second[1].append(total)
        for stage, ms in timing_ms.items():
            self._p_latency.labels(stage).observe(ms / 1000.0)

    def record_batch(self, size: int) -> None:
        with self._lock:
            self.last_batch_size = size
            self.engine_calls += 1
            self.batched_observations += size
        self._p_batch.observe(size)

    def set_connected_clients(self, n: int) -> None:
        self.connected_clients = n
        self._p_clients.set(n)

    def set_last(self, camera: str, frame: np.ndarray | bytes, actions: np.ndarray) -> None:
        with self._lock:
            self.last_frame = (camera, frame)
            self.last_actions = np.array(actions, dtype=np.float32)

    # ------------------------------------------------------------------------------- readers

    def last(self) -> tuple[tuple[str, np.ndarray | bytes] | None, np.ndarray | None]:
        """The last (camera, frame) and action chunk, read together."""
        with self._lock:
            return self.last_frame, self.last_actions

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self._rate_window_s:
            self._stamps.popleft()

    def _close_second(self) -> None:
        if self._current_second and self._current_second[1]:
            sec, vals = self._current_second
            arr = np.asarray(vals)
            self._history.append({"t": sec, "p50": float(np.percentile(arr, 50)),
                                  "p95": float(np.percentile(arr, 95)), "n": len(vals)})

    def request_rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            span = min(self._rate_window_s, max(now - self._started_mono, 1e-3))
            return len(self._stamps) / span

    def latency_percentiles(self) -> dict[str, dict[str, float]]:
        with self._lock:
            snap = {k: np.asarray(v) for k, v in self._stages.items() if v}
        return {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
                    "p99": float(np.percentile(v, 99)), "count": int(v.size)} for k, v in snap.items()}

    def history(self) -> list[dict]:
        with self._lock:
            hist = list(self._history)
            if self._current_second and self._current_second[1]:
                vals = np.asarray(self._current_second[1])
                hist.append({"t": self._current_second[0],
                             "p50": float(np.percentile(vals, 50)), "p95": float(np.percentile(vals, 95)),
                             "n": len(vals)})
            return hist

    def snapshot(self) -> dict:
        """Everything /api/status reports that lives here (the server adds model and engine)."""
        with self._lock:
            errors = dict(self._errors)
            requests = dict(self._requests)
        return {
            "uptime_s": time.monotonic() - self._started_mono,
            "started": self.started,
            "connected_clients": self.connected_clients,
            "request_rate": self.request_rate(),
            "requests": requests,
            "requests_total": sum(requests.values()),
            "errors": errors,
            "errors_total": sum(errors.values()),
            "latency_ms": self.latency_percentiles(),
            "last_batch_size": self.last_batch_size,
            "engine_calls": self.engine_calls,
            "mean_batch_size": self.batched_observations / self.engine_calls if self.engine_calls else 0.0,
        }
