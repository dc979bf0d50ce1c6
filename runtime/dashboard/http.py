"""Serving a FastAPI app from a background thread: the lara-serve dashboard and the lara-robot
status page both run this way beside their real-time work."""
from __future__ import annotations

import socket
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from fastapi import FastAPI

BASE_CSS_MARK = "/* {{base_css}} */"


def dashboard_page(package: str) -> str:
    """``package``'s ``index.html`` with the shared stylesheet (``runtime/dashboard/base.css``)
    inlined at its ``/* {{base_css}} */`` mark: each page stays one self-contained document (no
    external assets; robots' networks are often offline) while the look is defined once."""
    page = resources.files(package).joinpath("index.html").read_text(encoding="utf-8")
    if BASE_CSS_MARK not in page:
        raise ValueError(f"{package}/index.html has no {BASE_CSS_MARK} mark for the shared stylesheet")
    css = resources.files("lara_g1.runtime.dashboard").joinpath("base.css").read_text(encoding="utf-8")
    return page.replace(BASE_CSS_MARK, css)


def parse_hostport(spec: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"127.0.0.1:8080"`` or ``"8080"`` -> (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = default_host, spec
    try:
        return host.strip("[]") or default_host, int(port)
    except ValueError:
        raise ValueError(f"dashboard address must be HOST:PORT, got {spec!r}") from None


class BackgroundHTTPServer:
    """uvicorn in a daemon thread on a socket bound up front, so a busy port fails at once with a
    clear error and port 0 gives a free port (read back from ``port``/``url``)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8080, name: str = "dashboard"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise OSError(f"{name} cannot bind {host}:{port}: {exc}") from exc
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]},
                                        name=name, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "BackgroundHTTPServer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "BackgroundHTTPServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
