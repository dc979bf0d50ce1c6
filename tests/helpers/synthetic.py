"""A small learnable LeRobot v3.0 dataset for tests and the demo, written by the recorder's
own writer.

Each episode shows a coloured target at a random place on a dark image and a white cursor
for the active hand. The task says which hand: red target / left arm, blue target / right
arm. The goal pose is a fixed linear function of the target's image position; every step
the action moves 15 % of the way from the state to the goal, and the next state is that
action. So the action chunk is a deterministic function of the image (target colour and
place) and the state, and the cursor's motion between frames gives the LAM something to see.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.data.writer import LeRobotWriter

TASKS = ("reach the red target with the left hand", "reach the blue target with the right hand")
COLOURS = ((220, 40, 40), (40, 80, 230))
ARMS = ("left_arm", "right_arm")
HANDS = ("left_hand", "right_hand")
GAIN = 0.15
BACKGROUND = (40, 40, 40)
CURSOR_START = (0.5, 0.9)  # (u, v) of the cursor at the start pose: bottom centre


def goal_pose(embodiment, side: int, target_uv: tuple[float, float]) -> np.ndarray:
    """The pose that reaches the target at image position (u, v) in [0, 1]^2."""
    u, v = target_uv
    goal = embodiment.default_pose.astype(np.float32).copy()
    arm = embodiment.group(ARMS[side]).slice
    mirror = 1.0 if side == 0 else -1.0
    goal[arm][0] += 1.6 * (0.5 - v)            # shoulder pitch: higher target, arm up
    goal[arm][1] += mirror * 0.9 * (0.5 - u)   # shoulder roll: sideways
    goal[arm][3] += 0.8 * (v - 0.5)            # elbow
    goal[embodiment.group(HANDS[side]).slice] = 0.2  # close the hand
    return embodiment.clip(goal).astype(np.float32)


def _draw(size: tuple[int, int], colour, target_uv, cursor_uv) -> np.ndarray:
    h, w = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    r = max(2, h // 12)
    for (u, v), c, rad in ((target_uv, colour, r), (cursor_uv, (255, 255, 255), max(1, r // 2))):
        y, x = int(v * (h - 1)), int(u * (w - 1))
        img[max(0, y - rad):y + rad + 1, max(0, x - rad):x + rad + 1] = c
    return img


def write_synthetic_dataset(root: str | Path, episodes: int = 4, frames_per_episode: int = 40,
                            seed: int = 0, image_size: tuple[int, int] = (96, 96),
                            fps: int = 30, camera: str = "head") -> Path:
    """Write the dataset to ``root`` (which must not exist or be empty); returns ``root``."""
    if episodes < 1 or frames_per_episode < 1:
        raise ValueError("episodes and frames_per_episode must be at least 1")
    embodiment = load_embodiment("g1")
    rng = np.random.default_rng(seed)
    root = Path(root)
    with LeRobotWriter(root, fps=fps, cameras={camera: tuple(image_size)},
                       embodiment=embodiment, gop=10) as writer:
        for e in range(episodes):
            side = e % 2
            target = tuple(rng.uniform(0.15, 0.85, size=2))
            goal = goal_pose(embodiment, side, target)
            arm = embodiment.group(ARMS[side]).slice
            state = embodiment.default_pose.astype(np.float32).copy()
            start_gap = np.linalg.norm(goal[arm] - state[arm])
            writer.start_episode(TASKS[side])
            for t in range(frames_per_episode):
                progress = 1.0 - np.linalg.norm(goal[arm] - state[arm]) / max(start_gap, 1e-6)
                cursor = tuple(np.add(CURSOR_START, progress * np.subtract(target, CURSOR_START)))
                action = embodiment.clip(state + GAIN * (goal - state)).astype(np.float32)
                image = _draw(image_size, COLOURS[side], target, cursor)
                writer.add_frame(state, action, {camera: image}, timestamp=t / fps)
                state = action
            writer.save_episode()
    return root
