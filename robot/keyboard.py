"""The operator's keyboard: an e-stop key while the robot moves, and y/n answers in evaluation.

:class:`KeyboardEStop` puts the terminal in cbreak mode (keys arrive without Enter; Ctrl-C
still raises SIGINT) and triggers the e-stop on space, ``e`` or Esc. The terminal's settings
are restored on every exit path. Without a terminal on stdin (CI, scripts), or in a background
job, it does nothing: the dashboard's button and SIGINT/SIGTERM remain.
"""
from __future__ import annotations

import logging
import os
import select
import sys
import threading
from typing import IO, Any

from lara_g1.robot.safety import EStop, EStopSource

log = logging.getLogger(__name__)

ESTOP_KEYS = (" ", "e", "E", "\x1b")


class KeyboardEStop:
    def __init__(self, estop: EStop, stream: IO[str] | None = None) -> None:
        self.estop = estop
        self._stream = stream if stream is not None else sys.stdin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: Any = None
        self._fd: int | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self) -> "KeyboardEStop":
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            return self
        if not os.isatty(fd) or _in_background(fd):
            return self
        import termios
        import tty

        self._fd = fd
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="keyboard-estop", daemon=True)
        self._thread.start()
        print("e-stop: press SPACE, e or Esc (Ctrl-C also stops)", file=sys.stderr)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
        if self._saved is not None and self._fd is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def __enter__(self) -> "KeyboardEStop":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._fd is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            key = os.read(self._fd, 1).decode(errors="replace")
            if key in ESTOP_KEYS:
                log.warning("e-stop from the keyboard")
                self.estop.trigger(EStopSource.KEYBOARD)


def _in_background(fd: int) -> bool:
    """True when ``fd`` is our controlling terminal and another process group owns it (we are a
    background job: changing its settings would stop us with SIGTTOU)."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:        # not our controlling terminal: no job control applies
        return False


def ask_yes_no(question: str, stream_in: IO[str] | None = None, stream_out: IO[str] | None = None) -> bool:
    """Ask the operator until they answer y or n. Raises EOFError when input ends."""
    stream_in = stream_in if stream_in is not None else sys.stdin
    stream_out = stream_out if stream_out is not None else sys.stdout
    while True:
        stream_out.write(f"{question} [y/n] ")
        stream_out.flush()
        line = stream_in.readline()
        if not line:
            raise EOFError("no answer from the operator (input closed)")
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False
        stream_out.write("please answer y or n\n")
