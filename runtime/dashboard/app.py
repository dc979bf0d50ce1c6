"""FastAPI app over a running :class:`lara_g1.runtime.server.PolicyServer` and its metrics object.

The page (``index.html``, plain JS + canvas, no external assets: robots' networks are often
offline) polls ``/api/status`` and ``/api/last_actions`` and reloads ``/api/last_frame.jpg``.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lara_g1.runtime.dashboard.http import BackgroundHTTPServer, dashboard_page

if TYPE_CHECKING:
    from lara_g1.runtime.server import PolicyServer

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
    page = dashboard_page("lara_g1.runtime.dashboard")

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


class DashboardServer(BackgroundHTTPServer):
    """The lara-serve dashboard on its own thread (port 0: a free port)."""

    def __init__(self, server: "PolicyServer", host: str = "127.0.0.1", port: int = 8080):
        super().__init__(create_app(server), host, port, name="lara-serve-dashboard")
