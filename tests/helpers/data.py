"""Helpers shared by the data tests: a small dataset whose every value is known."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lara_g1.lara.data.writer import LeRobotWriter

LENGTHS = (12, 5, 20)
TASKS = ("pick up the cup", "pour the water", "pick up the cup")
SIZE = (48, 64)  # (H, W)
FPS = 30
DIM = 28


def state_of(episode: int, frame: int) -> np.ndarray:
    return (episode * 100 + frame + np.arange(DIM) / 100).astype(np.float32)


def action_of(episode: int, frame: int) -> np.ndarray:
    return (state_of(episode, frame) + 0.5).astype(np.float32)


def image_of(episode: int, frame: int) -> np.ndarray:
    """A smooth background and a bright square that moves 3 px per frame (frames differ)."""
    h, w = SIZE
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 120, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 120, h, dtype=np.uint8)[:, None]
    img[..., 2] = (60 + 40 * episode) % 240
    x = (3 * frame) % (w - 8)
    img[16:28, x:x + 8] = (250, 250, 250)
    return img


def write_episode(writer: LeRobotWriter, episode: int, length: int, task: str) -> None:
    writer.start_episode(task)
    for t in range(length):
        writer.add_frame(state_of(episode, t), action_of(episode, t),
                         {"head": image_of(episode, t)}, timestamp=t / FPS)
    writer.save_episode()


def write_known_dataset(root: Path, lengths=LENGTHS, tasks=TASKS) -> Path:
    with LeRobotWriter(root, fps=FPS, cameras={"head": SIZE}) as writer:
        for e, (length, task) in enumerate(zip(lengths, tasks)):
            write_episode(writer, e, length, task)
    return root
