"""Policies that ship with lara-g1.

Each is a serving-only bundle (``lara-export BUNDLE --onnx --deploy DIR``: config, stats, manifest
and the ONNX graphs, no torch weights), served with ``lara-serve --engine ort`` (or ``trt`` after
``lara-export --trt`` on a GPU). ``lara-demo --task TASK`` serves the task's policy on the
simulated G1.

One policy serves both simulated tasks; the task's instruction (configs/control/tasks.yaml, the
paper's wording) steers it. It was trained by ``lara-loop`` on 50 + 50 scripted-expert
demonstrations of both tasks, recorded through the teleop path from the ready pose of
configs/embodiment/g1.yaml; how it was made and how well it does are in docs/RESULTS.md and in
the bundle's config.json (``extra.training``):

- ``g1_sim_two_task_tiny`` (``pick_place`` and ``pour``): LARA DiT-only (``--no-align``),
  ``tiny`` preset, 10 000 steps; full success over 50 unseen scenes per task: pick-and-place
  70 %, pour 76 %. It ships instead of LARA full, which measured worse on these tasks (at the
  ``tiny`` size the LAM's latent carries no motion: docs/POLICY.md).
"""
from __future__ import annotations

from pathlib import Path

FOR_TASK = {"pick_place": "g1_sim_two_task_tiny", "pour": "g1_sim_two_task_tiny"}
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
