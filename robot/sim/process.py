"""``SimProcess``: start ``lara-sim`` as a subprocess for tests and demos, and stop it cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from lara_g1.core.errors import LaraError
from lara_g1.robot.dds import participant as dds
from lara_g1.robot.dds import topics
from lara_g1.robot.dds.messages import LowState_


class SimProcessError(LaraError, RuntimeError):
    pass


class SimProcess:
    """``with SimProcess("pick_place", domain_id=123) as sim: ...``; waits until rt/lowstate flows."""

    def __init__(self, task: str = "pick_place", domain_id: int = 1,
                 render_size: tuple[int, int] | None = (224, 224), seed: int = 0,
                 interface: str = "lo", camera_fps: float = 15.0, startup_timeout_s: float = 60.0,
                 extra_args: list[str] | None = None):
        self.task, self.domain_id, self.render_size, self.seed = task, domain_id, render_size, seed
        self.interface, self.camera_fps, self.startup_timeout_s = interface, camera_fps, startup_timeout_s
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self._log = None

    def command(self) -> list[str]:
        render = "none" if self.render_size is None else f"{self.render_size[1]}x{self.render_size[0]}"
        return [sys.executable, "-m", "lara_g1.robot.sim.cli", "--task", self.task, "--domain", str(self.domain_id),
                "--interface", self.interface, "--render", render, "--seed", str(self.seed),
                "--camera-fps", str(self.camera_fps), *self.extra_args]

    def log_tail(self, n: int = 3000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-n:]

    def start(self) -> "SimProcess":
        """Start lara-sim and wait for rt/lowstate (a no-op while it is already running)."""
        if self.alive():
            return self
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        env = dict(os.environ)
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        reader = None
        try:
            reader = dds.reader(self.domain_id, topics.LOWSTATE, LowState_, self.interface)
            deadline = time.monotonic() + self.startup_timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SimProcessError(f"lara-sim exited with {self.proc.returncode} during start-up:\n"
                                          f"{self.log_tail()}")
                if any(isinstance(m, LowState_) for m in reader.take(N=4)):
                    return self
                time.sleep(0.05)
            raise SimProcessError(f"lara-sim published no {topics.LOWSTATE} on domain {self.domain_id} "
                                  f"within {self.startup_timeout_s} s:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        finally:
            del reader

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5.0)
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> "SimProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
