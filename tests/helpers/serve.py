"""lara-serve as a subprocess for tests that need a real server in another process (or venv)."""
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from lara_g1.runtime.client import PolicyClient, ServerTimeout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lara_serve(policy: str | Path, engine: str, *, args: Sequence[str] = (), python: str = sys.executable,
               log: IO[str] | None = None, env: dict[str, str] | None = None,
               startup_timeout_s: float = 60.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m lara_g1.runtime.cli`` on a free loopback port, no dashboard; yields
    ``(process, address)`` once it answers a ping, and stops it (SIGINT, then kill) afterwards."""
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([python, "-m", "lara_g1.runtime.cli", "--policy", str(policy), "--engine", engine,
                             "--bind", address, "--dashboard", "off", *args],
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    try:
        with PolicyClient(address, timeout_s=0.5) as client:
            deadline = time.monotonic() + startup_timeout_s
            while True:
                assert proc.poll() is None, "lara-serve exited during start-up"
                try:
                    client.ping()
                    break
                except ServerTimeout:
                    assert time.monotonic() < deadline, f"lara-serve did not answer within {startup_timeout_s:.0f} s"
        yield proc, address
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:       # lara-serve's own shutdown is not under test here
                proc.kill()
                proc.wait(5)
