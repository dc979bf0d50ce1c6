"""A clock the test moves by hand, for code that takes a ``clock: () -> float``."""
from __future__ import annotations


class FakeClock:
    """Returns ``t``; the test sets or advances it (``clock.t += dt``)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
