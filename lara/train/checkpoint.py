"""Training checkpoints: everything ``--resume`` needs to continue a run exactly.

A checkpoint holds the trained modules, the optimizer and scheduler, the step, the torch RNG
states and the run's settings. Batches and flow noise are functions of (seed, rank, step)
(see :mod:`lara_g1.lara.train.batches`), so these are all the state a run has. Files are
``<out>/checkpoints/step-NNNNNNN.pt``, written to a temporary name, fsynced and renamed, so a
kill mid-write never leaves a truncated checkpoint behind; only the newest ``keep`` are kept.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from lara_g1.core.errors import LaraError

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{7})\.pt$")


class CheckpointError(LaraError, ValueError):
    """A checkpoint that cannot be resumed from; the message says why."""


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / CHECKPOINT_DIR


def list_checkpoints(out: Path) -> list[Path]:
    d = checkpoint_dir(out)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    settings: dict[str, Any], keep: int = 1) -> Path:
    d = checkpoint_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step-{step:07d}.pt"
    tmp = path.with_name(path.name + ".tmp")
    payload = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "rng": rng_state(), "settings": settings}
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(out)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, settings: dict[str, Any],
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``path`` and check that it was written by a run with the same ``settings``."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from e
    saved = payload.get("settings", {})
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in settings.items()
             if saved.get(k) != v]
    if diffs:
        raise CheckpointError(f"{path} was written by a run with other settings; resume with the "
                              f"same ones or start a new --out ({'; '.join(diffs)})")
    return payload
