"""Bench: G1 arm IK time per solve (teleop use: warm-started, one solve per frame per arm).

Prints median and p99 wall time and CPU (thread) time per solve for
  - tracking: a smooth wrist trajectory at 90 Hz tracking rate, warm start from the last frame;
  - cold: random reachable targets, no warm start, batched restarts.
Run: OMP_NUM_THREADS=1 python bench/ik.py [--frames N]
On a shared, loaded machine wall time overstates the cost; CPU time is the steadier number.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.kinematics import load_arm_chains, rotation_angle
from lara_g1.teleop.retarget.arm_ik import ArmIK


def _stats(name: str, wall: list[float], cpu: list[float], extra: str = "") -> None:
    w, c = np.array(wall) * 1e3, np.array(cpu) * 1e3
    print(f"{name:28s} n={len(w):5d}  wall median {np.median(w):6.3f} ms  p99 {np.percentile(w, 99):6.3f} ms"
          f"  | cpu median {np.median(c):6.3f} ms  p99 {np.percentile(c, 99):6.3f} ms  {extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=900, help="tracking frames per arm")
    ap.add_argument("--cold", type=int, default=100, help="cold solves per arm")
    args = ap.parse_args()
    emb = load_embodiment("g1")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for side, chain in load_arm_chains().items():
        ik = ArmIK(chain, rest=emb.default_pose[emb.group(f"{side}_arm").slice])
        rng = np.random.default_rng(0)
        # A wrist path through the workspace: a smooth random walk in joint space mapped by FK,
        # so every target is reachable and moves like a hand (about 0.5 m/s peak).
        knots = rng.uniform(0.6 * chain.lower, 0.6 * chain.upper, (8, chain.dof))
        for label, frames in (("tracking (warm)", args.frames), ("fast tracking (warm)", args.frames // 6)):
            t = np.linspace(0, len(knots) - 1, frames)
            path = np.stack([np.interp(t, np.arange(len(knots)), knots[:, j]) for j in range(chain.dof)], 1)
            q = ik.solve(chain.fk(path[0]), restarts=32).q
            wall, cpu, errs, iters, steps = [], [], [], [], []
            for qt in path:
                target = chain.fk(qt)
                w0, c0 = time.perf_counter(), time.thread_time()
                res = ik.solve(target, q, max_iters=15, max_delta=0.15)
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - w0)
                steps.append(np.linalg.norm(target[:3, 3] - chain.fk(q)[:3, 3]))
                q = res.q
                T = chain.fk(q)
                errs.append((np.linalg.norm(T[:3, 3] - target[:3, 3]),
                             rotation_angle(T[:3, :3].T @ target[:3, :3])))
                iters.append(res.iterations)
            e = np.array(errs)
            _stats(f"{side} {label}", wall, cpu,
                   f"hand moves <= {1e3 * max(steps):.0f} mm/frame; iters median {np.median(iters):.0f} "
                   f"max {max(iters)}; max err {e[:, 0].max() * 1e3:.2f} mm {np.degrees(e[:, 1].max()):.2f} deg")
        wall, cpu, ok = [], [], 0
        for _ in range(args.cold):
            target = chain.fk(rng.uniform(chain.lower, chain.upper))
            w0, c0 = time.perf_counter(), time.thread_time()
            res = ik.solve(target, restarts=32)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            ok += res.converged
        _stats(f"{side} cold (32 restarts)", wall, cpu, f"converged {ok}/{args.cold}")


if __name__ == "__main__":
    main()
