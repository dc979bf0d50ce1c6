"""The one exception base of lara-g1.

Every error lara-g1 raises on purpose derives from :class:`LaraError`, so a caller (a CLI, the
server, a lab's own script) can catch the project's errors apart from bugs. Each error also keeps
the builtin base that says what kind of failure it is (``ValueError`` for bad input or config,
``RuntimeError`` for a state of the world, ``ImportError`` for a missing extra), so existing
``except ValueError`` handlers keep working.
"""
from __future__ import annotations


class LaraError(Exception):
    """Base of every error lara-g1 raises on purpose."""


class ConfigError(LaraError, ValueError):
    """A config file or value that is missing, malformed or out of range; the message names the
    file and the field."""
