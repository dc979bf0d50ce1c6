"""ChunkScheduler on an injected clock: stale dropping, cross-fades, interpolation, requests."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lara_g1.robot.scheduler import ChunkRequester, ChunkScheduler, SchedulerConfig, SchedulerError

DT = 1.0 / 30.0


def ramp_chunk(start: float, slope: float = 1.0, horizon: int = 8, dim: int = 3) -> np.ndarray:
    """Action k = start + slope * k on every joint (easy to read back)."""
    k = np.arange(horizon, dtype=np.float64)[:, None]
    return np.repeat(start + slope * k, dim, axis=1)


def test_interpolates_from_policy_rate_to_command_rate():
    s = ChunkScheduler(SchedulerConfig(policy_hz=30, crossfade_s=0.0))
    assert s.target(0.0) is None
    assert s.add_chunk(ramp_chunk(0.0), obs_stamp=10.0, now=10.0)
    # 100 Hz commands between policy steps follow the line k = (t - t_obs) * 30
    for t in np.arange(10.0, 10.0 + 7 * DT, 0.01):
        np.testing.assert_allclose(s.target(t), (t - 10.0) * 30.0, atol=1e-4)
    # past the last action: hold it
    np.testing.assert_allclose(s.target(11.0), 7.0)
    assert s.remaining(10.0 + 7 * DT + 0.01) == 0.0


def test_drops_actions_stale_given_the_measured_latency():
    s = ChunkScheduler(SchedulerConfig(crossfade_s=0.0))
    latency = 0.05   # 1.5 policy steps: actions 0 and 1 are in the past on arrival
    assert s.add_chunk(ramp_chunk(0.0), obs_stamp=1.0, now=1.0 + latency)
    assert s.actions_dropped == 2
    np.testing.assert_allclose(s.target(1.0 + latency), 2.0)      # first fresh action, not 1.5
    np.testing.assert_allclose(s.target(1.0 + 2.5 * DT), 2.5, atol=1e-6)
    assert s.latency_estimate() == pytest.approx(latency)


def test_a_chunk_stale_on_arrival_is_dropped_whole():
    s = ChunkScheduler(SchedulerConfig(crossfade_s=0.0))
    s.add_chunk(ramp_chunk(0.0), obs_stamp=1.0, now=1.01)
    assert not s.add_chunk(ramp_chunk(100.0), obs_stamp=1.0, now=1.0 + 9 * DT)
    assert s.chunks_dropped == 1 and s.chunks_accepted == 1
    assert s.last_received == 1.01                                 # a stale chunk is no sign of life
    assert s.target(1.0 + 9 * DT)[0] < 100.0


def test_overlapping_chunks_cross_fade_linearly():
    s = ChunkScheduler(SchedulerConfig(crossfade_s=0.1))
    s.add_chunk(np.zeros((8, 2)), obs_stamp=0.0, now=0.0)
    t_new = 0.1
    s.add_chunk(np.ones((8, 2)), obs_stamp=t_new, now=t_new)
    np.testing.assert_allclose(s.target(t_new), 0.0)                 # no jump on arrival
    np.testing.assert_allclose(s.target(t_new + 0.025), 0.25, atol=1e-9)
    np.testing.assert_allclose(s.target(t_new + 0.05), 0.5, atol=1e-9)
    np.testing.assert_allclose(s.target(t_new + 0.1), 1.0)
    np.testing.assert_allclose(s.target(t_new + 0.2), 1.0)


def test_cross_fade_is_limited_to_the_overlap_and_chains():
    s = ChunkScheduler(SchedulerConfig(crossfade_s=0.1))
    s.add_chunk(np.zeros((8, 1)), obs_stamp=0.0, now=0.0)          # ends at 7/30 = 0.233
    s.add_chunk(np.full((8, 1), 1.0), obs_stamp=0.2, now=0.2)      # overlap 0.033 s only
    np.testing.assert_allclose(s.target(0.2 + 7 * DT / 7), 1.0)    # finished within the overlap
    s.add_chunk(np.full((8, 1), 3.0), obs_stamp=0.25, now=0.25)
    s.add_chunk(np.full((8, 1), 5.0), obs_stamp=0.27, now=0.27)    # arrives mid-fade
    v = float(s.target(0.27)[0])
    assert 1.0 < v < 3.0                                           # continuous: still mid-fade
    np.testing.assert_allclose(s.target(0.5), 5.0)


def test_no_cross_fade_into_an_exhausted_chunk():
    s = ChunkScheduler(SchedulerConfig(crossfade_s=0.1))
    s.add_chunk(np.zeros((8, 1)), obs_stamp=0.0, now=0.0)
    s.add_chunk(np.ones((8, 1)), obs_stamp=1.0, now=1.0)
    np.testing.assert_allclose(s.target(1.0), 1.0)


def test_requests_ahead_of_the_end_given_latency():
    cfg = SchedulerConfig(request_ahead_s=0.05, crossfade_s=0.0)
    s = ChunkScheduler(cfg)
    assert s.should_request(0.0)                                   # nothing yet
    s.add_chunk(ramp_chunk(0.0), obs_stamp=0.0, now=0.03)          # latency 30 ms, ends at 0.233
    assert not s.should_request(0.1)
    end = 7 * DT
    assert not s.should_request(end - 0.09)
    assert s.should_request(end - 0.07)                            # 0.05 + 0.03 before the end


def test_bad_chunks_and_settings_are_refused():
    s = ChunkScheduler(SchedulerConfig())
    with pytest.raises(SchedulerError):
        s.add_chunk(np.zeros(28), obs_stamp=0.0, now=0.0)
    s.add_chunk(np.zeros((8, 2)), obs_stamp=0.0, now=0.0)
    bad = np.ones((8, 2))
    bad[3, 1] = np.nan
    with pytest.raises(SchedulerError, match="1 non-finite"):
        s.add_chunk(bad, obs_stamp=0.01, now=0.01)
    np.testing.assert_array_equal(s.target(0.05), 0.0)             # the previous plan goes on
    with pytest.raises(SchedulerError, match="policy_hz"):
        SchedulerConfig.from_dict({"policy_hz": 0})
    with pytest.raises(SchedulerError, match="unknown"):
        SchedulerConfig.from_dict({"horizon": 8})


def test_requester_keeps_a_request_in_flight_and_survives_errors():
    s = ChunkScheduler(SchedulerConfig(request_ahead_s=0.2))
    calls = []
    fail = threading.Event()
    fail.set()

    def observe():
        return "obs", time.monotonic()

    def infer(obs):
        calls.append(obs)
        if fail.is_set() and len(calls) <= 3:
            raise TimeoutError("server gone")
        time.sleep(0.005)
        return ramp_chunk(0.0)

    with ChunkRequester(s, observe, infer, retry_s=0.001) as r:
        deadline = time.monotonic() + 5.0
        while s.chunks_accepted < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert r.errors["TimeoutError"] == 3
    assert s.chunks_accepted >= 3
    assert r.last_error is None
