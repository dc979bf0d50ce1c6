"""The project's YAML configuration files, shipped as package data.

`config_path("embodiment/g1.yaml")` gives the path of a bundled file; loaders that validate
each kind of file live next to the code that uses it (e.g. :mod:`lara_g1.core.embodiment`).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_path(relative: str) -> Path:
    """Path of a bundled config file, e.g. ``config_path("embodiment/g1.yaml")``."""
    path = Path(str(resources.files("lara_g1.configs").joinpath(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"no bundled config {relative!r} (looked in {path.parent})")
    return path
