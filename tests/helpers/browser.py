"""Headless Chromium driven over the DevTools protocol (websockets), for page tests that need a
live browser (a video that plays, scripts that run for a while), not only the DOM after load.

    with HeadlessChromium(tmp_path) as browser:       # skips the test where chromium is missing
        browser.goto(url)
        browser.wait_for("document.querySelector('video').currentTime > 0")
        value = browser.eval("1 + 1")
"""
from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class HeadlessChromium:
    def __init__(self, tmp_path: Path, timeout_s: float = 30.0) -> None:
        self.tmp_path = Path(tmp_path)
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self._ws = None
        self._ids = itertools.count(1)
        self.console: list[str] = []

    def __enter__(self) -> HeadlessChromium:
        from websockets.sync.client import connect

        browser = chromium_path()
        if browser is None:
            pytest.skip("chromium is not installed (apt-get install -y chromium)")
        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-sync", "--disable-background-networking", "--disable-component-update", "--mute-audio",
             "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
             f"--user-data-dir={self.tmp_path / 'chromium-profile'}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._devtools_port()
        deadline = time.monotonic() + self.timeout_s
        while True:
            pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                     if t.get("type") == "page"]
            if pages:
                break
            assert time.monotonic() < deadline, "chromium opened no page"
            time.sleep(0.1)
        self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout_s).__enter__()
        self.call("Runtime.enable")
        self.call("Page.enable")
        return self

    def _devtools_port(self) -> int:
        found: dict[str, int] = {}
        lines: list[str] = []

        def read() -> None:
            for line in self.proc.stderr:
                lines.append(line)
                m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                if m:
                    found["port"] = int(m.group(1))
                    break
            for _ in self.proc.stderr:     # keep the pipe drained
                pass

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + self.timeout_s
        while "port" not in found:
            assert self.proc.poll() is None, "chromium exited: " + "".join(lines)[-2000:]
            assert time.monotonic() < deadline, "chromium did not open its DevTools port: " + "".join(lines)[-2000:]
            time.sleep(0.05)
        return found["port"]

    def call(self, method: str, **params) -> dict:
        """One DevTools command; returns its result (events that arrive meanwhile are noted)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown"):
                self.console.append(json.dumps(reply["params"])[:500])
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def eval(self, expression: str):
        """The value of a JS expression (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float | None = None):
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {timeout_s or self.timeout_s:.0f} s: {expression}; "
                                     f"console: {self.console[-5:]}")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self._ws is not None:
            self._ws.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
