"""FastAPI app over a running robot control loop (same style as lara-serve's dashboard).

The app knows two callables: ``status() -> dict`` (the loop's JSON view: joint states against
commands, safety phase and interventions, loop period, chunk and end-to-end latency) and
``estop(source)``, which latches the safety filter's e-stop. The page (``index.html``, plain JS,
no external assets) polls ``/api/status`` and has an E-STOP button that POSTs ``/api/estop``.

With ``live() -> ControlLoop | None`` (the running trial's loop) and ``camera() -> image`` it also
shows the running trial: ``/api/camera`` (the newest frame of the policy's camera stream),
``/api/trace`` (commanded against measured joints per group over the last seconds, from the
loop's tick history) and ``/api/last_chunk`` (the newest action chunk as the policy sent it).

With ``dataset`` (a dataset of recorded trials, robot/recording.py) ``/review`` lists its trials
with their outcomes and plays any trial's video beside its joint plots, from ``/api/trials``,
``/api/trials/{episode}`` (the per-frame series) and ``/api/trials/{episode}/video/{camera}``.
"""
from __future__ import annotations

import io
import math
import struct
import time
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from fastapi import FastAPI, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from lara_g1.core.embodiment import Embodiment
from lara_g1.robot.safety import EStopSource
from lara_g1.runtime.dashboard.http import BASE_CSS_MARK, BackgroundHTTPServer, dashboard_page

if TYPE_CHECKING:
    from lara_g1.robot.control import ControlLoop

_NO_CACHE = {"Cache-Control": "no-store"}
TRACE_HZ = 25.0          # samples per second of /api/trace (the loop ticks at >= 100 Hz)

__all__ = ["create_app", "RobotDashboard"]


def _page(name: str) -> str:
    """``name`` of this package with the shared stylesheet inlined (see ``dashboard_page``)."""
    if name == "index.html":
        return dashboard_page("lara_g1.robot.dashboard")
    page = resources.files("lara_g1.robot.dashboard").joinpath(name).read_text(encoding="utf-8")
    css = resources.files("lara_g1.runtime.dashboard").joinpath("base.css").read_text(encoding="utf-8")
    return page.replace(BASE_CSS_MARK, css)


def encode_image(image: np.ndarray) -> tuple[bytes, str]:
    """(bytes, media type): JPEG where Pillow is installed, else PNG (zlib; the robot's base install)."""
    img = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    try:
        from PIL import Image
    except ImportError:
        h, w = img.shape[:2]
        raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))
        return png, "image/png"
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return buf.getvalue(), "image/jpeg"


def _groups(embodiment: Embodiment | None, dim: int) -> list[tuple[str, int, int, str, list[str]]]:
    if embodiment is None or embodiment.dim != dim:
        return [("joints", 0, dim, "", [f"joint_{i}" for i in range(dim)])]
    names = list(embodiment.joint_names)
    return [(g.name, g.start, g.stop, g.unit, names[g.start:g.stop]) for g in embodiment.groups]


def _rows(values: list[np.ndarray | None], s: int, e: int) -> list[list[float | None]]:
    """[joint][sample] of columns s..e (None where a sample has no value)."""
    out: list[list[float | None]] = [[] for _ in range(e - s)]
    for v in values:
        for j in range(e - s):
            out[j].append(None if v is None else round(float(v[s + j]), 4))
    return out


def trace_json(loop: ControlLoop, seconds: float, embodiment: Embodiment | None) -> dict[str, Any]:
    """The loop's last ``seconds`` of ticks at about TRACE_HZ: per group, commanded and measured."""
    ticks = loop.history.snapshot()
    if not ticks:
        return {"t": [], "groups": []}
    now = ticks[-1].t
    picked, last_t = [], -math.inf
    for tick in ticks:
        if tick.t >= now - seconds and tick.t - last_t >= 1.0 / TRACE_HZ - 1e-6:
            picked.append(tick)
            last_t = tick.t
    dim = len(picked[0].command)
    return {
        "t": [round(k.t - now, 3) for k in picked],
        "running": [k.running for k in picked],
        "groups": [{"name": name, "unit": unit, "joints": joints,
                    "command": _rows([k.command for k in picked], s, e),
                    "measured": _rows([k.measured for k in picked], s, e)}
                   for name, s, e, unit, joints in _groups(embodiment, dim)],
    }


def chunk_json(loop: ControlLoop, embodiment: Embodiment | None) -> dict[str, Any]:
    last = loop.scheduler.last_chunk
    if last is None:
        return {"horizon": 0, "groups": []}
    actions, stamp, arrival = last
    return {"horizon": int(actions.shape[0]), "age_s": round(time.monotonic() - arrival, 3),
            "latency_ms": round(1e3 * (arrival - stamp), 1), "policy_hz": loop.config.scheduler.policy_hz,
            "groups": [{"name": name, "unit": unit, "joints": joints, "values": _rows(list(actions), s, e)}
                       for name, s, e, unit, joints in _groups(embodiment, actions.shape[1])]}


def create_app(status: Callable[[], dict[str, Any]], estop: Callable[[EStopSource], None], *,
               live: Callable[[], ControlLoop | None] | None = None,
               camera: Callable[[], np.ndarray | None] | None = None,
               dataset: str | Path | None = None, embodiment: Embodiment | None = None) -> FastAPI:
    app = FastAPI(title="lara-robot", docs_url=None, redoc_url=None, openapi_url=None)
    page = _page("index.html")
    review_page = _page("review.html")
    plot_js = resources.files("lara_g1.robot.dashboard").joinpath("plot.js").read_text(encoding="utf-8")
    started = time.monotonic()
    root = None if dataset is None else Path(dataset)

    def no_data(what: str, code: int = 404) -> Response:
        return Response(status_code=code, content=what.encode(), media_type="text/plain", headers=_NO_CACHE)

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

    @app.get("/plot.js")
    def plot() -> Response:
        return Response(plot_js, media_type="text/javascript", headers=_NO_CACHE)

    # -- the running trial --------------------------------------------------------------------
    @app.get("/api/camera")
    def api_camera() -> Response:
        image = camera() if camera is not None else None
        if image is None:
            return no_data("no camera frame (no trial running)")
        body, media = encode_image(image)
        return Response(body, media_type=media, headers=_NO_CACHE)

    @app.get("/api/trace")
    def api_trace(seconds: float = 10.0) -> JSONResponse:
        loop = live() if live is not None else None
        body = {"t": [], "groups": []} if loop is None else trace_json(loop, min(max(seconds, 0.5), 60.0),
                                                                       embodiment)
        return JSONResponse(body, headers=_NO_CACHE)

    @app.get("/api/last_chunk")
    def api_last_chunk() -> JSONResponse:
        loop = live() if live is not None else None
        return JSONResponse({"horizon": 0, "groups": []} if loop is None else chunk_json(loop, embodiment),
                            headers=_NO_CACHE)

    # -- review of recorded trials ------------------------------------------------------------
    @app.get("/review", response_class=HTMLResponse)
    def review() -> HTMLResponse:
        return HTMLResponse(review_page, headers=_NO_CACHE)

    def read(fn: Callable[[], Any]) -> Any:
        from lara_g1.lara.data.format import INFO_PATH

        if root is None:
            return no_data("no trials are recorded (lara-robot --record DIR, or lara-robot review DIR)")
        if not (root / INFO_PATH).is_file():
            return JSONResponse({"dataset": str(root), "trials": []}, headers=_NO_CACHE)
        try:
            return fn()
        except ImportError as exc:
            return no_data(f"reading datasets needs the record extra ({exc.name} is missing)", 503)
        except (IndexError, KeyError) as exc:
            return no_data(str(exc))

    @app.get("/api/trials")
    def api_trials() -> Any:
        from lara_g1.robot.recording import read_trials

        def body() -> JSONResponse:
            from lara_g1.lara.data import format as fmt

            info = fmt.read_info(root)
            cameras = [fmt.camera_name(k) for k in fmt.video_keys(info)]
            return JSONResponse({"dataset": str(root), "fps": info["fps"], "cameras": cameras,
                                 "trials": read_trials(root)}, headers=_NO_CACHE)
        return read(body)

    @app.get("/api/trials/{episode}")
    def api_trial(episode: int) -> Any:
        from lara_g1.robot.recording import episode_series

        return read(lambda: JSONResponse(episode_series(root, episode, embodiment), headers=_NO_CACHE))

    @app.get("/api/trials/{episode}/video/{camera_name}")
    def api_video(episode: int, camera_name: str) -> Any:
        from lara_g1.robot.recording import video_path

        def body() -> Response:
            path, _, _ = video_path(root, episode, camera_name)
            if not path.is_file():
                return no_data(f"{path}: video missing")
            return FileResponse(path, media_type="video/mp4")   # answers Range requests (seeking)
        return read(body)

    return app


class RobotDashboard(BackgroundHTTPServer):
    """The lara-robot status page on its own thread (port 0: a free port)."""

    def __init__(self, status: Callable[[], dict[str, Any]], estop: Callable[[EStopSource], None],
                 host: str = "127.0.0.1", port: int = 8081, *,
                 live: Callable[[], ControlLoop | None] | None = None,
                 camera: Callable[[], np.ndarray | None] | None = None,
                 dataset: str | Path | None = None, embodiment: Embodiment | None = None) -> None:
        super().__init__(create_app(status, estop, live=live, camera=camera, dataset=dataset,
                                    embodiment=embodiment), host, port, name="lara-robot-dashboard")
