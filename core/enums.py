"""``StrEnum``: the base of lara-g1's outcome enums (stop reasons, session outcomes, key events).

A member is a ``str`` equal to its value and prints as its value (in f-strings, ``%s``, CSV and
JSON alike), so logs and reports read as plain words while code compares members, never text.
(The standard library's ``enum.StrEnum`` does the same from Python 3.11; lara-g1 supports 3.10.)
"""
from __future__ import annotations

import enum


class StrEnum(str, enum.Enum):
    """A str-valued enum whose ``str()`` and ``format()`` are its value."""

    def __str__(self) -> str:
        return str(self.value)
