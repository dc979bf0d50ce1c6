"""PolicyServer: the ZMQ ROUTER front of an inference engine (protocol in runtime.protocol).

Two threads. The I/O thread owns the ROUTER socket: it decodes and validates every message,
answers ``ping``/``metadata``/``reset`` and every error itself, and puts ``infer`` jobs on a
bounded queue (full: ``busy``). The worker thread takes jobs off the queue, waits up to the batch
window for more (only while other recently active clients could still send), drops jobs whose
deadline passed (``deadline``, never computed), calls ``engine.infer`` once for the batch and sends
each job its own slice back through an inproc pipe to the I/O thread. A message that cannot be
parsed gets an error reply to its sender only; nobody else notices.

The same socket answers Isaac-GR00T's clients: a message without ``"v"`` is a GR00T request, read
as N1.5 (``protocol``) or N1.6 (``gr00t_dialect``) by its shape.
"""
from __future__ import annotations

import collections
import contextlib
import hmac
import itertools
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from lara_g1.core.observation import Observation, make_noise
from lara_g1.runtime import gr00t_dialect as G16
from lara_g1.runtime import protocol as P
from lara_g1.runtime.engine import Engine
from lara_g1.runtime.metrics import ServingMetrics

log = logging.getLogger("lara.serve")

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
_ACTIVE_CLIENT_S = 2.0      # a client that sent infer this recently may join the current batch
_SESSION_IDLE_S = 600.0     # per-client state of a silent client is forgotten after this
_MAX_SESSIONS = 4096
# GR00T-style endpoints, N1.5 (ExternalRobotInferenceClient) and N1.6 (PolicyClient) together
_GROOT_ENDPOINTS = tuple(dict.fromkeys(P.GROOT_ENDPOINTS + G16.ENDPOINTS))


def is_loopback(bind: str) -> bool:
    """True for ipc://, inproc:// and tcp:// addresses on 127.0.0.0/8 or ::1."""
    if bind.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(.+):([0-9]+|\*)$", bind)
    if not m:
        return False
    host = m.group(1)
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


@dataclass
class ClientSession:
    """Per-connection state (keyed by the ROUTER identity); ``reset`` clears it."""

    first_seen: float
    last_seen: float
    requests: int = 0
    errors: int = 0
    last_request_id: Any = None
    last_infer: float = 0.0
    gr00t_n16: bool = False  # this connection sent a request only GR00T N1.6's PolicyClient sends


@dataclass
class _Job:
    envelope: list[bytes]
    request_id: Any
    observations: list[Observation]
    seeds: list[int | None]
    received: float                 # time.monotonic() at receipt
    decode_ms: float
    deadline: float | None = None   # monotonic
    groot: bool = False
    groot_batched: bool = False
    gr00t_n16: bool = False         # reply [action, info] (GR00T N1.6 PolicyClient)
    frame: tuple[str, Any] | None = None  # (camera, JPEG bytes or RGB array) for the dashboard
    client: bytes = b""
    answered: bool = False


@dataclass
class _Batch:
    jobs: list[_Job] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(j.observations) for j in self.jobs)


class PolicyServer:
    """Serve ``engine`` on ``bind`` (a ZMQ endpoint; ``tcp://127.0.0.1:*`` picks a free port).

    ``token``: when set every request must carry it (compared in constant time).
    ``max_batch``: observations per engine call; ``batch_window_ms``: how long the worker waits
    for more requests once it holds one; ``queue_size``: pending infer requests before ``busy``.
    A non-loopback ``bind`` without a token raises ``ValueError`` unless ``insecure``.
    ``gr00t_modality_config``: the form (``"n1.5"`` or ``"n1.6"``) of the GR00T
    ``get_modality_config`` reply for a connection that has not yet sent an N1.6-only request
    (N1.5 and N1.6 clients send that request identically but decode the reply differently).
    """

    def __init__(self, engine: Engine, bind: str = "tcp://127.0.0.1:5555", token: str | None = None,
                 max_batch: int = 8, batch_window_ms: float = 2.0, queue_size: int = 64, *,
                 insecure: bool = False, max_message_bytes: int = P.DEFAULT_MAX_MESSAGE_BYTES,
                 metrics: ServingMetrics | None = None, seed: int | None = None,
                 gr00t_modality_config: str = "n1.5"):
        if gr00t_modality_config not in ("n1.5", "n1.6"):
            raise ValueError(f"gr00t_modality_config must be 'n1.5' or 'n1.6', not {gr00t_modality_config!r}")
        if max_batch < 1 or queue_size < 1 or batch_window_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and batch_window_ms >= 0")
        if token is not None and not token:
            raise ValueError("an empty token would accept anyone; pass None for no token")
        if not is_loopback(bind) and token is None and not insecure:
            raise ValueError(f"refusing to bind {bind}, which is not a loopback address, without a token: "
                             f"anyone on the network could drive the robot. Use a token file, or "
                             f"--insecure if the network is trusted")
        self.engine = engine
        self.bind = bind
        self._token = token.encode() if token is not None else None
        self.max_batch = max_batch
        self.batch_window_s = batch_window_ms / 1000.0
        self.max_message_bytes = max_message_bytes
        self.gr00t_modality_config = gr00t_modality_config
        self.metrics = metrics or ServingMetrics()

        meta = engine.metadata
        self._meta = meta
        self.embodiment = meta["embodiment"]
        # The embodiment's width (28 for the G1): of the state a client sends and of the actions it
        # gets back. The model works padded to max_action_dim (32): that is the noise's width.
        self.state_dim = self.action_dim = int(self.embodiment["dim"])
        self.cameras = list(meta["cameras"])
        self.horizon = int(meta["horizon"])   # the model's chunk: the noise's length
        # the steps served (GR00T N1.6 serves the first action_steps of its chunk): the chunk clients get
        self.action_steps = int(meta.get("action_steps") or self.horizon)
        self.max_action_dim = int(meta["max_action_dim"])
        self.model_id = str(meta["model_id"])
        self.engine_kind = str(meta.get("engine", getattr(engine, "kind", "?")))

        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=queue_size)
        self._rng = np.random.default_rng(seed)
        self._sessions: collections.OrderedDict[bytes, ClientSession] = collections.OrderedDict()
        self._sessions_lock = threading.Lock()  # the I/O thread writes, the dashboard reads
        self._active_lock = threading.Lock()
        self._active: dict[bytes, float] = {}   # client -> last infer time, read by the worker
        self._pending: collections.Counter[bytes] = collections.Counter()  # client -> queued or running jobs
        self._connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._pipe_addr = f"inproc://lara-serve-replies-{id(self)}"
        self.address: str | None = None

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> "PolicyServer":
        """Bind (errors surface here, in the caller's thread) and start the two threads."""
        if self._threads:
            raise RuntimeError("server already started")
        self._ctx = zmq.Context()
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        # Beyond 4x the message limit the peer is cut off without a reply (memory protection);
        # up to that we answer too_large.
        router.setsockopt(zmq.MAXMSGSIZE, 4 * self.max_message_bytes)
        if "[" in self.bind:  # an IPv6 literal such as tcp://[::1]:5555
            router.setsockopt(zmq.IPV6, 1)
        try:
            router.bind(self.bind)
        except zmq.ZMQError as exc:
            router.close(0)
            self._ctx.term()
            raise OSError(f"cannot bind {self.bind}: {exc}") from exc
        self.address = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._router = router
        pipe_in = self._ctx.socket(zmq.PAIR)
        pipe_in.bind(self._pipe_addr)
        monitor = router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._threads = [
            threading.Thread(target=self._io_loop, args=(router, pipe_in, monitor), name="lara-serve-io", daemon=True),
            threading.Thread(target=self._worker_loop, name="lara-serve-worker", daemon=True),
        ]
        for t in self._threads:
            t.start()
        log.info("serving %s (%s) on %s", self.model_id, self.engine_kind, self.address)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads and close the sockets. Pending requests get no reply."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        stuck = [t.name for t in self._threads if t.is_alive()]
        self._threads = []
        if stuck:  # an engine call that does not return: leave its (daemon) thread and context behind
            log.warning("threads %s did not stop within %.1f s", stuck, timeout)
        elif self._ctx is not None:
            self._ctx.term()
        self._ctx = None

    @property
    def running(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def __enter__(self) -> "PolicyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -------------------------------------------------------------------------------- status

    def metadata(self) -> dict:
        emb = self.embodiment
        return {
            "protocol_version": P.PROTOCOL_VERSION,
            "embodiment": emb["name"],
            "embodiment_id": emb["embodiment_id"],
            "joint_names": list(emb["joint_names"]),
            "joint_groups": {g: [s, e] for g, (s, e, _u) in emb["groups"].items()},
            "joint_units": {g: u for g, (_s, _e, u) in emb["groups"].items()},
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "action_horizon": self.action_steps,
            "denoising_steps": int(self._meta.get("denoising_steps", 0)),
            "cameras": {c: list(hw) for c, hw in self._meta["cameras"].items()},
            "default_instruction": self._meta.get("default_instruction"),
            "model_id": self.model_id,
            "engine": self.engine_kind,
            "max_batch": self.max_batch,
            "max_message_bytes": self.max_message_bytes,
            "auth_required": self._token is not None,
        }

    def status(self) -> dict:
        """What the dashboard's /api/status serves."""
        snap = self.metrics.snapshot()
        snap.update({"model": self.model_id, "engine": self.engine_kind, "bind": self.address or self.bind,
                     "embodiment": self.embodiment["name"], "max_batch": self.max_batch,
                     "batch_window_ms": self.batch_window_s * 1000.0, "queue_depth": self._queue.qsize(),
                     "queue_size": self._queue.maxsize, "sessions": len(self._sessions),
                     "clients": self.client_sessions()})
        return snap

    def client_sessions(self, limit: int = 32) -> list[dict]:
        """The most recently active clients' session records (newest first)."""
        now = time.monotonic()
        with self._sessions_lock:
            recent = list(self._sessions.items())[-limit:][::-1]
            return [{"client": key.hex(), "requests": s.requests, "errors": s.errors,
                     "idle_s": now - s.last_seen, "connected_s": now - s.first_seen,
                     "last_request_id": s.last_request_id,
                     "last_infer_s_ago": (now - s.last_infer) if s.last_infer else None}
                    for key, s in recent]

    # ------------------------------------------------------------------------------ I/O thread

    def _io_loop(self, router: zmq.Socket, pipe_in: zmq.Socket, monitor: zmq.Socket) -> None:
        poller = zmq.Poller()
        for s in (router, pipe_in, monitor):
            poller.register(s, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(50))
                if monitor in events:
                    self._drain_monitor(monitor)
                if pipe_in in events:
                    for _ in range(256):
                        try:
                            router.send_multipart(pipe_in.recv_multipart(zmq.NOBLOCK), copy=False)
                        except zmq.Again:
                            break
                if router in events:
                    for _ in range(256):
                        try:
                            frames = router.recv_multipart(zmq.NOBLOCK, copy=True)
                        except zmq.Again:
                            break
                        self._on_message(router, frames)
        except zmq.ContextTerminated:
            pass
        finally:
            with contextlib.suppress(zmq.ZMQError):
                router.disable_monitor()
            for s in (monitor, pipe_in, router):
                s.close(0)

    def _drain_monitor(self, monitor: zmq.Socket) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._connections += 1
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._connections = max(0, self._connections - 1)
            self.metrics.set_connected_clients(self._connections)

    def _session(self, client: bytes, now: float) -> ClientSession:
        with self._sessions_lock:
            s = self._sessions.get(client)
            if s is None:
                s = self._sessions[client] = ClientSession(first_seen=now, last_seen=now)
            self._sessions.move_to_end(client)
            s.last_seen = now
            while self._sessions:
                oldest_key, oldest = next(iter(self._sessions.items()))
                if len(self._sessions) > _MAX_SESSIONS or now - oldest.last_seen > _SESSION_IDLE_S:
                    del self._sessions[oldest_key]
                else:
                    break
            return s

    def _on_message(self, router: zmq.Socket, frames: list[bytes]) -> None:
        t0 = time.monotonic()
        client = frames[0]
        # REQ peers put an empty delimiter frame before the body; DEALER peers may not.
        try:
            delim = frames.index(b"", 1)
        except ValueError:
            delim = 0
        envelope, body = frames[: delim + 1], frames[delim + 1:]
        session = self._session(client, t0)
        session.requests += 1
        request: P.Request | None = None
        try:
            if len(body) != 1:
                raise P.ProtocolError(P.BAD_REQUEST, f"a request is exactly one message frame, got {len(body)}")
            request = P.parse_request(P.unpack(body[0], self.max_message_bytes))
            session.last_request_id = request.request_id
            self._check_token(request)
            P.check_arrays(request)
            known = _GROOT_ENDPOINTS if request.groot else P.ENDPOINTS
            self.metrics.record_request(request.endpoint if request.endpoint in known else "unknown")
            reply = self._dispatch(request, envelope, client, session, t0)
        except P.ProtocolError as exc:
            rid = exc.request_id if exc.request_id is not None else (request.request_id if request else None)
            groot = request.groot if request else False
            reply = self._error(exc.code, exc.message, rid, groot, session)
        except Exception as exc:  # a bug of ours: answer it, log it, keep serving
            log.exception("internal error handling a request")
            reply = self._error(P.INTERNAL, f"{type(exc).__name__}: {exc}",
                                request.request_id if request else None, request.groot if request else False, session)
        if reply is not None:
            router.send_multipart(envelope + [reply])

    def _check_token(self, request: P.Request) -> None:
        if self._token is None:
            return
        given = (request.token or "").encode()
        if not hmac.compare_digest(given, self._token):
            raise P.ProtocolError(P.UNAUTHORIZED, "missing or wrong token" if request.token else "this server needs a token",
                                  request.request_id)

    def _error(self, code: str, message: str, request_id: Any, groot: bool, session: ClientSession | None) -> bytes:
        self.metrics.record_error(code)
        log.info("request %r answered %s: %s", request_id, code, message)
        if session is not None:
            session.errors += 1
        if groot:
            return P.pack_groot(P.groot_error_reply(code, message))
        return P.pack(P.error_reply(request_id, code, message))

    def _dispatch(self, req: P.Request, envelope: list[bytes], client: bytes, session: ClientSession,
                  t0: float) -> bytes | None:
        if req.groot:
            if G16.is_n16(req.endpoint, req.data):
                session.gr00t_n16 = True
                return self._dispatch_n16(req, envelope, client, session, t0)
            if req.endpoint == "ping":
                return P.pack_groot({"status": "ok", "message": "Server is running"})
            if req.endpoint == "get_modality_config":
                if session.gr00t_n16 or self.gr00t_modality_config == "n1.6":
                    return P.pack_groot(G16.modality_config(self.embodiment, self.cameras, self.action_steps))
                return P.pack_groot(P.groot_modality_config(self.embodiment, self.cameras, self.action_steps))
            if req.endpoint == "get_action":
                observations, batched = P.parse_groot_observation(req.data, self.embodiment, self.cameras)
                cam = self.cameras[0]
                job = _Job(envelope, None, observations, [None] * len(observations), t0,
                           (time.monotonic() - t0) * 1000.0, groot=True, groot_batched=batched,
                           frame=(cam, observations[0].images[cam]), client=client)
                return self._enqueue(job, session)
            raise P.ProtocolError(P.UNKNOWN_ENDPOINT, f"unknown endpoint {req.endpoint!r}; GR00T-style "
                                                      f"endpoints: {list(_GROOT_ENDPOINTS)}")
        rid = req.request_id
        if req.endpoint == "ping":
            return P.pack(P.ok_reply(rid, {"server_time": time.time()}))
        if req.endpoint == "metadata":
            return P.pack(P.ok_reply(rid, self.metadata()))
        if req.endpoint == "reset":
            with self._sessions_lock:
                self._sessions.pop(client, None)
            with self._active_lock:
                self._active.pop(client, None)
            return P.pack(P.ok_reply(rid, {"reset": True}))
        if req.endpoint == "infer":
            try:
                inf = P.parse_infer(req.data, self.state_dim, self.cameras)
            except P.ProtocolError as exc:
                exc.request_id = rid
                raise
            cam = self.cameras[0]
            frame = inf.jpeg.get(cam, inf.observation.images[cam])
            deadline = t0 + inf.deadline_ms / 1000.0 if inf.deadline_ms is not None else None
            job = _Job(envelope, rid, [inf.observation], [inf.noise_seed], t0, (time.monotonic() - t0) * 1000.0,
                       deadline=deadline, frame=(cam, frame), client=client)
            return self._enqueue(job, session)
        raise P.ProtocolError(P.UNKNOWN_ENDPOINT, f"unknown endpoint {req.endpoint!r}; endpoints: "
                                                  f"{list(P.ENDPOINTS)}", rid)

    def _dispatch_n16(self, req: P.Request, envelope: list[bytes], client: bytes, session: ClientSession,
                      t0: float) -> bytes | None:
        """GR00T N1.6 ``get_action`` and ``reset`` (runtime.gr00t_dialect)."""
        if req.endpoint == "get_action":
            observations, seeds = G16.parse_get_action(req.data, self.embodiment, self.cameras, self.max_batch)
            cam = self.cameras[0]
            job = _Job(envelope, None, observations, seeds, t0, (time.monotonic() - t0) * 1000.0,
                       groot=True, gr00t_n16=True, frame=(cam, observations[0].images[cam]), client=client)
            return self._enqueue(job, session)
        G16.parse_reset(req.data)  # reset: forget this connection's state, as our own reset does,
        with self._sessions_lock:  # but remember the dialect it speaks
            self._sessions.pop(client, None)
        with self._active_lock:
            self._active.pop(client, None)
        self._session(client, t0).gr00t_n16 = True
        return P.pack_groot({})

    def _enqueue(self, job: _Job, session: ClientSession) -> bytes | None:
        now = time.monotonic()
        session.last_infer = now
        with self._active_lock:
            self._active[job.client] = now
            if self._pending[job.client] >= self.max_batch:
                raise P.ProtocolError(P.BUSY, f"this client already has {self._pending[job.client]} requests "
                                              f"pending (at most --max-batch {self.max_batch} per client)",
                                      job.request_id)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise P.ProtocolError(P.BUSY, f"the server's queue of {self._queue.maxsize} pending requests "
                                              f"is full; retry shortly", job.request_id) from None
            self._pending[job.client] += 1
        return None  # the worker replies

    # ---------------------------------------------------------------------------- worker thread

    def _worker_loop(self) -> None:
        pipe = self._ctx.socket(zmq.PAIR)
        pipe.connect(self._pipe_addr)
        try:
            while not self._stop.is_set():
                try:
                    first = self._queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                batch = self._collect(first)
                try:
                    self._run_batch(batch, pipe)
                except Exception:  # a bug of ours: answer everyone in the batch, keep the worker alive
                    log.exception("internal error running a batch")
                    for job in [j for j in batch.jobs if not j.answered]:
                        self._reply(pipe, job, self._error(P.INTERNAL, "internal server error (see the server log)",
                                                           job.request_id, job.groot, None))
        finally:
            pipe.close(0)

    def _active_clients(self, now: float) -> int:
        with self._active_lock:
            for c in [c for c, t in self._active.items() if now - t > _ACTIVE_CLIENT_S]:
                del self._active[c]
            return len(self._active)

    def _collect(self, first: _Job) -> _Batch:
        """``first`` plus whatever joins within the window, up to ``max_batch`` observations.

        The window is only waited while fewer distinct clients are in the batch than have
        recently sent infer requests: a lone robot never pays the window.
        """
        batch = _Batch([first])
        end = time.monotonic() + self.batch_window_s
        while batch.size < self.max_batch:
            try:
                batch.jobs.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            now = time.monotonic()
            clients = {j.client for j in batch.jobs}
            if now >= end or len(clients) >= self._active_clients(now):
                break
            try:
                batch.jobs.append(self._queue.get(timeout=end - now))
            except queue.Empty:
                break
        return batch

    def _reply(self, pipe: zmq.Socket, job: _Job, payload: bytes) -> None:
        # Release the client's slot BEFORE the reply can reach it: a REQ client sends its next
        # request as soon as it reads this one, and must not find its slot still taken.
        with self._active_lock:
            self._pending[job.client] -= 1
            if self._pending[job.client] <= 0:
                del self._pending[job.client]
        job.answered = True
        pipe.send_multipart(job.envelope + [payload])

    def _run_batch(self, batch: _Batch, pipe: zmq.Socket) -> None:
        now = time.monotonic()
        live = []
        for job in batch.jobs:
            if job.deadline is not None and now > job.deadline:
                late = (now - job.received) * 1000.0
                self._reply(pipe, job, self._error(P.DEADLINE, f"request waited {late:.1f} ms, past its deadline "
                                                               f"of {(job.deadline - job.received) * 1000.0:.1f} ms; "
                                                               f"not computed", job.request_id, job.groot, None))
            else:
                live.append(job)
        if not live:
            return
        try:
            results = self._infer(live)
        except Exception:
            if len(live) == 1:
                log.exception("engine failed")
                job = live[0]
                self._reply(pipe, job, self._error(P.INTERNAL, "the engine failed on this request (see the server log)",
                                                   job.request_id, job.groot, None))
                return
            # One bad observation must not fail the others: retry them one by one.
            for job in live:
                self._run_batch(_Batch([job]), pipe)
            return
        actions, engine_ms, started = results
        self.metrics.record_batch(sum(len(j.observations) for j in live))
        offset, served = 0, None
        for job in live:
            n = len(job.observations)
            chunk = actions[offset:offset + n]
            offset += n
            if not np.all(np.isfinite(chunk)):  # never hand a robot NaN targets
                self._reply(pipe, job, self._error(P.INTERNAL, "the engine produced non-finite actions for this "
                                                               "request; nothing was sent", job.request_id, job.groot, None))
                continue
            done = time.monotonic()
            timing = {"decode": job.decode_ms, "queue": (started - job.received) * 1000.0, **engine_ms,
                      "server": (done - job.received) * 1000.0}
            if job.gr00t_n16:
                payload = P.pack_groot(G16.action_reply(chunk, self.embodiment, timing, self.model_id))
            elif job.groot:
                payload = P.pack_groot(P.groot_actions(chunk, self.embodiment, job.groot_batched))
            else:
                payload = P.pack(P.ok_reply(job.request_id, P.infer_result(chunk[0], timing, self.model_id)))
            self.metrics.record_latency(timing)  # before the reply: a client that reads the status next sees it
            self._reply(pipe, job, payload)
            served = (job, chunk[-1])
        if served is not None and served[0].frame is not None:
            self.metrics.set_last(served[0].frame[0], served[0].frame[1], served[1])

    def _infer(self, jobs: list[_Job]) -> tuple[np.ndarray, dict, float]:
        observations = list(itertools.chain.from_iterable(j.observations for j in jobs))
        seeds = list(itertools.chain.from_iterable(j.seeds for j in jobs))
        noise = np.empty((len(observations), self.horizon, self.max_action_dim), dtype=np.float32)
        for i, seed in enumerate(seeds):
            if seed is None:
                noise[i] = self._rng.standard_normal((self.horizon, self.max_action_dim), dtype=np.float32)
            else:
                noise[i] = make_noise(1, self.horizon, self.max_action_dim, seed)[0]
        started = time.monotonic()
        result = self.engine.infer(observations, noise=noise)
        actions = np.asarray(result.actions, dtype=np.float32)
        if actions.shape != (len(observations), self.action_steps, self.action_dim):
            raise RuntimeError(f"engine returned actions of shape {actions.shape}, expected "
                               f"{(len(observations), self.action_steps, self.action_dim)}")
        engine_ms = {("engine" if k == "total" else k): float(v) for k, v in result.timing_ms.items()}
        engine_ms.setdefault("engine", (time.monotonic() - started) * 1000.0)
        return actions, engine_ms, started
