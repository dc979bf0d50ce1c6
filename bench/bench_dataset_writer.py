"""CPU cost of recording with LeRobotWriter: one 640x480 camera at 30 fps.

Feeds camera-like frames (a textured scene, a moving object, sensor noise) through
``add_frame`` and reports, per frame, the wall and CPU time of add_frame and of the video
encoder alone, the CPU load that implies at 30 fps (1.0 = one core), and save_episode's time.

    python bench/bench_dataset_writer.py [--frames 300] [--preset veryfast] [--codec libx264]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lara_g1.lara.data.writer import LeRobotWriter


def camera_frames(n: int, h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    scene = np.stack([(128 + 60 * np.sin(xx / 23.0 + c) * np.cos(yy / 31.0 - c)) for c in range(3)], -1)
    for i in range(n):
        img = scene.copy()
        x, y = int(w / 2 + w / 3 * np.sin(i / 20)), int(h / 2 + h / 4 * np.cos(i / 15))
        img[max(0, y - 40):y + 40, max(0, x - 40):x + 40] = (200, 60, 40)
        img += rng.normal(0, 3, size=img.shape)
        yield np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--codec", default=None)
    ap.add_argument("--preset", default="veryfast")
    args = ap.parse_args()
    frames = list(camera_frames(args.frames, args.height, args.width))
    state = np.zeros(28, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        with LeRobotWriter(root, fps=args.fps, cameras={"head": (args.height, args.width)},
                           codec=args.codec, preset=args.preset) as writer:
            writer.start_episode("benchmark")
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for t, img in enumerate(frames):
                writer.add_frame(state, state, {"head": img}, timestamp=t / args.fps)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            s0 = time.perf_counter()
            writer.save_episode()
            save = time.perf_counter() - s0
            encode = writer.encode_seconds
        video = next(root.glob("videos/*/chunk-000/file-000.mp4"))
        size_mb = video.stat().st_size / 1e6
    n = len(frames)
    print(f"codec {writer.codec} preset {args.preset}, {n} frames {args.width}x{args.height}")
    print(f"add_frame: {1e3 * wall / n:.2f} ms wall, {1e3 * cpu / n:.2f} ms CPU per frame "
          f"(CPU load at {args.fps} fps: {cpu / n * args.fps:.2f} cores)")
    print(f"encoder alone (incl. flush): {1e3 * encode / n:.2f} ms wall per frame "
          f"({encode / wall:.0%} of add_frame+flush)")
    print(f"save_episode: {1e3 * save:.0f} ms; video {size_mb:.2f} MB "
          f"({8 * size_mb / (n / args.fps):.2f} Mbit/s)")


if __name__ == "__main__":
    main()
