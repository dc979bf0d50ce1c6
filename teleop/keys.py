"""Recording keys as in ``lerobot-record``: next (→ or n), re-record (← or r), stop (Esc or q).

:class:`RecordKeys` reads a terminal in cbreak mode on its own thread (keys arrive without
Enter; Ctrl-C still raises SIGINT) and restores the terminal's settings on every exit path.
Without a terminal on stdin (CI, scripts) it reads nothing and the session runs unattended.
"""
from __future__ import annotations

import os
import queue
import select
import sys
import threading
from typing import IO, Any

from lara_g1.core.enums import StrEnum


class Key(StrEnum):
    """A recording key event."""

    NEXT = "next"            # → or n: end the episode and save it (or start the next phase)
    RERECORD = "rerecord"    # ← or r: discard the episode and record it again
    STOP = "stop"            # Esc or q: end the session


NEXT, RERECORD, STOP = Key.NEXT, Key.RERECORD, Key.STOP
_ESC_WAIT_S = 0.05          # an Esc followed within this by '[' is an arrow key, not Esc


def decode_keys(data: str) -> list[Key]:
    """Key events in a chunk of terminal input (arrow keys arrive as ESC [ C / ESC [ D)."""
    events, i = [], 0
    while i < len(data):
        if data.startswith("\x1b[C", i) or data.startswith("\x1bOC", i):
            events.append(NEXT)
            i += 3
        elif data.startswith("\x1b[D", i) or data.startswith("\x1bOD", i):
            events.append(RERECORD)
            i += 3
        elif data.startswith("\x1b[", i) or data.startswith("\x1bO", i):
            i += 3                      # another escape sequence (up/down arrows, ...): ignored
        else:
            ch = data[i]
            if ch in ("n", "N", "\n", "\r"):
                events.append(NEXT)
            elif ch in ("r", "R"):
                events.append(RERECORD)
            elif ch in ("q", "Q", "\x1b"):
                events.append(STOP)
            i += 1
    return events


class RecordKeys:
    def __init__(self, stream: IO[str] | None = None):
        self._stream = stream if stream is not None else sys.stdin
        self.events: queue.Queue[Key] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._saved: Any = None

    @staticmethod
    def interactive(stream: IO[str] | None = None) -> bool:
        stream = stream if stream is not None else sys.stdin
        try:
            return os.isatty(stream.fileno())
        except (AttributeError, OSError, ValueError):
            return False

    def start(self) -> "RecordKeys":
        if not self.interactive(self._stream):
            return self
        import termios
        import tty
        self._fd = self._stream.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        self._thread = threading.Thread(target=self._run, name="record-keys", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        fd = self._fd
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, 64).decode(errors="ignore")
            if data.endswith("\x1b"):   # maybe the start of an arrow key: wait for the rest
                more, _, _ = select.select([fd], [], [], _ESC_WAIT_S)
                if more:
                    data += os.read(fd, 64).decode(errors="ignore")
            for event in decode_keys(data):
                self.events.put(event)

    def poll(self) -> Key | None:
        try:
            return self.events.get_nowait()
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self._saved is not None:
            import termios
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def __enter__(self) -> "RecordKeys":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
