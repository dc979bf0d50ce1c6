"""FastAPI app over a running robot control loop (same style as lara-serve's dashboard).

The app knows two callables: ``status() -> dict`` (the loop's JSON view: joint states against
commands, safety phase and interventions, loop period, chunk and end-to-end latency) and
``estop(reason)``, which latches the safety filter's e-stop. The page (``index.html``, plain JS,
no external assets) polls ``/api/status`` and has an E-STOP button that POSTs ``/api/estop``.
"""
from __future__ import annotations

import socket
import threading
import time
from importlib import resources
from typing import Any, Callable

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from runtime.dashboard.app import parse_hostport

_NO_CACHE = {"Cache-Control": "no-store"}

__all__ = ["create_app", "RobotDashboard", "parse_hostport"]


def create_app(status: Callable[[], dict[str, Any]], estop: Callable[[str], None]) -> FastAPI:
    app = FastAPI(title="lara-robot", docs_url=None, redoc_url=None, openapi_url=None)
    page = resources.files("robot.dashboard").joinpath("index.html").read_text(encoding="utf-8")
    started = time.monotonic()

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "uptime_s": time.monotonic() - started})

    @app.get("/api/status")
    def api_status() -> JSONResponse:
        return JSONResponse(status(), headers=_NO_CACHE)

    @app.post("/api/estop")
    def api_estop() -> JSONResponse:
        estop("dashboard")
        return JSONResponse({"estop": True, "reason": "dashboard"}, headers=_NO_CACHE)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=_NO_CACHE)

    return app


class RobotDashboard:
    """uvicorn in a background thread on a socket bound up front (port 0: a free port)."""

    def __init__(self, status: Callable[[], dict[str, Any]], estop: Callable[[str], None],
                 host: str = "127.0.0.1", port: int = 8081) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise OSError(f"robot dashboard cannot bind {host}:{port}: {exc}") from exc
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(create_app(status, estop), log_level="warning", access_log=False,
                                lifespan="off")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]},
                                        name="lara-robot-dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "RobotDashboard":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "RobotDashboard":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
