"""Policies that ship with lara-g1.

Each is a serving-only bundle (``lara-export BUNDLE --onnx --deploy DIR``: config, stats, manifest
and the ONNX graphs, no torch weights), served with ``lara-serve --engine ort`` (or ``trt`` after
``lara-export --trt`` on a GPU). ``lara-demo --task TASK`` serves the task's policy on the
simulated G1.

Each simulated task has its own policy, trained by ``lara-loop --tasks TASK`` on that task's 50
scripted-expert demonstrations, recorded through the teleop path from the ready pose of
configs/embodiment/g1.yaml; how each was made and how well it does are in docs/RESULTS.md and in
the bundle's config.json (``extra.training``):

- ``g1_sim_tiny`` (``pick_place``): LARA (alignment on), ``tiny`` preset, 10 000 steps; 88 % full
  success over 50 unseen scenes.
- ``g1_sim_pour_tiny`` (``pour``): the same settings on pour; 48 % full success over 50 unseen
  scenes.
"""
from __future__ import annotations

from pathlib import Path

FOR_TASK = {"pick_place": "g1_sim_tiny", "pour": "g1_sim_pour_tiny"}
DEFAULT = FOR_TASK["pick_place"]


def bundled_policy(name: str = DEFAULT) -> Path:
    """The directory of the bundled policy ``name``."""
    path = Path(__file__).resolve().parent / name
    if not (path / "manifest.json").is_file():
        known = sorted(p.name for p in Path(__file__).resolve().parent.iterdir() if (p / "manifest.json").is_file())
        raise FileNotFoundError(f"no bundled policy {name!r} in {path.parent} (bundled: {', '.join(known) or 'none'})")
    return path


def policy_for_task(task: str) -> Path:
    """The bundled policy trained on the simulated task ``task``."""
    if task not in FOR_TASK:
        raise FileNotFoundError(f"no bundled policy for task {task!r} (tasks: {', '.join(FOR_TASK)})")
    return bundled_policy(FOR_TASK[task])
