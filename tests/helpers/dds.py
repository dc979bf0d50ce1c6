"""DDS domain ids for tests: each call returns an id no other test of this pytest process got.

Tests start simulators and robots on their own domains so they cannot hear each other. Drawn
independently, two modules can land on the same id; CycloneDDS then refuses to create the second
configured domain in the process (a flaky failure, seen in CI). One shuffled pool per process
rules that out; the shuffle keeps two test runs on one host apart most of the time.
"""
from __future__ import annotations

import random

# Domain ids the simulator and robot configs never use by default (0 real G1, 1 sim) and that
# stay below CycloneDDS's highest usable id (232).
_POOL = list(range(60, 231))
random.SystemRandom().shuffle(_POOL)


def fresh_domain() -> int:
    """A DDS domain id unique within this process."""
    if not _POOL:
        raise RuntimeError("tests drew every DDS domain id in 60..230")
    return _POOL.pop()
