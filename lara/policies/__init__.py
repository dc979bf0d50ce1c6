"""Policies that ship with lara-g1.

Each is a serving-only bundle (``lara-export BUNDLE --onnx --deploy DIR``: config, stats, manifest
and the ONNX graphs, no torch weights), served with ``lara-serve --engine ort`` (or ``trt`` after
``lara-export --trt`` on a GPU). ``lara-demo`` serves the default one on the simulated G1.

- ``g1_sim_tiny``: LARA (alignment on) of the ``tiny`` preset, 10 000 steps, trained by ``lara-loop``
  on 50 scripted-expert demonstrations of the simulated pick_place task recorded through the
  teleop path from the ready pose of configs/embodiment/g1.yaml (pour was not trained); how it
  was made and how well it does (88 % full success over 50 unseen scenes) are in docs/RESULTS.md
  and in the bundle's config.json (``extra.training``).
"""
from __future__ import annotations

from pathlib import Path

DEFAULT = "g1_sim_tiny"


def bundled_policy(name: str = DEFAULT) -> Path:
    """The directory of the bundled policy ``name``."""
    path = Path(__file__).resolve().parent / name
    if not (path / "manifest.json").is_file():
        known = sorted(p.name for p in Path(__file__).resolve().parent.iterdir() if (p / "manifest.json").is_file())
        raise FileNotFoundError(f"no bundled policy {name!r} in {path.parent} (bundled: {', '.join(known) or 'none'})")
    return path
