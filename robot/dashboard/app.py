"""FastAPI app over a running robot control loop (same style as lara-serve's dashboard).

The app knows two callables: ``status() -> dict`` (the loop's JSON view: joint states against
commands, safety phase and interventions, loop period, chunk and end-to-end latency) and
``estop(source)``, which latches the safety filter's e-stop. The page (``index.html``, plain JS,
no external assets) polls ``/api/status`` and has an E-STOP button that POSTs ``/api/estop``.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from lara_g1.robot.safety import EStopSource
from lara_g1.runtime.dashboard.http import BackgroundHTTPServer, dashboard_page

_NO_CACHE = {"Cache-Control": "no-store"}

__all__ = ["create_app", "RobotDashboard"]


def create_app(status: Callable[[], dict[str, Any]], estop: Callable[[EStopSource], None]) -> FastAPI:
    app = FastAPI(title="lara-robot", docs_url=None, redoc_url=None, openapi_url=None)
    page = dashboard_page("lara_g1.robot.dashboard")
    started = time.monotonic()

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "uptime_s": time.monotonic() - started})

    @app.get("/api/status")
    def api_status() -> JSONResponse:
        return JSONResponse(status(), headers=_NO_CACHE)

    @app.post("/api/estop")
    def api_estop() -> JSONResponse:
        estop(EStopSource.DASHBOARD)
        return JSONResponse({"estop": True, "reason": EStopSource.DASHBOARD.value}, headers=_NO_CACHE)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=_NO_CACHE)

    return app


class RobotDashboard(BackgroundHTTPServer):
    """The lara-robot status page on its own thread (port 0: a free port)."""

    def __init__(self, status: Callable[[], dict[str, Any]], estop: Callable[[EStopSource], None],
                 host: str = "127.0.0.1", port: int = 8081) -> None:
        super().__init__(create_app(status, estop), host, port, name="lara-robot-dashboard")
