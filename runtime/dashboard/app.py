"""FastAPI app over a running :class:`runtime.server.PolicyServer` and its metrics object.

The page (``index.html``, plain JS + canvas, no external assets: robots' networks are often
offline) polls ``/api/status`` and ``/api/last_actions`` and reloads ``/api/last_frame.jpg``.
"""
from __future__ import annotations

import io
import socket
import threading
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from runtime.server import PolicyServer

_NO_CACHE = {"Cache-Control": "no-store"}


def _jpeg(frame: np.ndarray | bytes) -> bytes:
    if isinstance(frame, (bytes, bytearray)):
        return bytes(frame)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def create_app(server: "PolicyServer") -> FastAPI:
    app = FastAPI(title="lara-serve", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = server.metrics
    page = resources.files("runtime.dashboard").joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        alive = server.running
        return JSONResponse({"status": "ok" if alive else "stopped", "model": server.model_id},
                            status_code=200 if alive else 503)

    @app.get("/api/status")
    def status() -> JSONResponse:
        body = server.status()
        body["latency_history"] = metrics.history()
        return JSONResponse(body, headers=_NO_CACHE)

    @app.get("/api/last_actions")
    def last_actions() -> JSONResponse:
        frame, actions = metrics.last()
        emb = server.embodiment
        if actions is None:
            return JSONResponse({"horizon": 0, "camera": None, "groups": {}}, headers=_NO_CACHE)
        groups = {g: {"unit": unit, "joints": emb["joint_names"][s:e], "values": actions[:, s:e].T.tolist()}
                  for g, (s, e, unit) in emb["groups"].items()}
        return JSONResponse({"horizon": int(actions.shape[0]), "camera": frame[0] if frame else None,
                             "groups": groups}, headers=_NO_CACHE)

    @app.get("/api/last_frame.jpg")
    def last_frame() -> Response:
        last, _ = metrics.last()
        if last is None:
            return Response(status_code=404, content=b"no frame received yet", media_type="text/plain")
        camera, frame = last
        return Response(_jpeg(frame), media_type="image/jpeg", headers={**_NO_CACHE, "X-Camera": camera})

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=_NO_CACHE)

    return app


def parse_hostport(spec: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"127.0.0.1:8080"`` or ``"8080"`` -> (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = default_host, spec
    try:
        return host.strip("[]") or default_host, int(port)
    except ValueError:
        raise ValueError(f"dashboard address must be HOST:PORT, got {spec!r}") from None


class DashboardServer:
    """uvicorn in a background thread on a socket bound up front (port 0: a free port)."""

    def __init__(self, server: "PolicyServer", host: str = "127.0.0.1", port: int = 8080):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise OSError(f"dashboard cannot bind {host}:{port}: {exc}") from exc
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(create_app(server), log_level="warning", access_log=False, lifespan="off")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]},
                                        name="lara-serve-dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "DashboardServer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
