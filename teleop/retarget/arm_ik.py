"""Inverse kinematics for one G1 arm: wrist pose -> 7 joint angles.

Damped least squares on the chain of :mod:`lara_g1.robot.kinematics`, with

- joint limits respected at every iterate (joints that sit on a limit and are pushed outward drop
  out of the step: a small active set, so the solver keeps converging along the free joints);
- warm start from the previous solution, so consecutive frames give consecutive solutions;
- a null-space pull towards a rest posture, which settles the redundant 7th DoF (elbow swivel):
  a wrist pose gives the same arm posture whatever the path to it, so demonstrations are
  consistent in joint space (a policy learns joint targets from them) and nothing drifts over
  long sessions. A solve is done when the pose is reached AND the pull has settled, not at the
  first iterate within tolerance (which would keep whatever swivel the warm start had);
- a bounded step per iteration (shortened, never bent, at a bound), a bounded number of
  iterations and optionally a bounded change per call (``max_delta``), so an unreachable target
  gives the closest pose the iterations reach, never a jump or a NaN;
- cold solves (no warm start) retry from fixed random seeds, all run as one numpy batch.

Errors are position (m) and a weighted rotation vector (rad): 1 rad of orientation error counts
as ``rot_weight`` metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lara_g1.robot.kinematics import ArmChain, rotation_log


@dataclass
class IKResult:
    q: np.ndarray          # [7] joint angles, always within the chain's limits
    pos_err: float         # m
    rot_err: float         # rad
    iterations: int
    converged: bool


class ArmIK:
    def __init__(self, chain: ArmChain, rest: np.ndarray | None = None, *, rot_weight: float = 0.3,
                 damping: float = 0.005, error_damping: float = 0.05, max_step: float = 0.4,
                 max_iters: int = 40, pos_tol: float = 5e-4, rot_tol: float = 5e-3,
                 nullspace_gain: float = 0.2, nullspace_tol: float = 1e-3,
                 seeds: int = 32, restart_iters: int = 60, seed: int = 0):
        self.chain = chain
        self.rest = chain.clip(np.zeros(chain.dof) if rest is None else rest)
        self.rot_weight = float(rot_weight)
        self.damping = float(damping)
        self.error_damping = float(error_damping)
        self.max_step = float(max_step)
        self.max_iters = int(max_iters)
        self.pos_tol, self.rot_tol = float(pos_tol), float(rot_tol)
        self.nullspace_gain = float(nullspace_gain)
        self.nullspace_tol = float(nullspace_tol)
        self.restart_iters = int(restart_iters)
        # Fixed restart seeds (used only by cold solves), deterministic for reproducible datasets.
        rng = np.random.default_rng(seed)
        span = chain.upper - chain.lower
        self._seeds = chain.lower + span * rng.random((seeds, chain.dof))
        self._w = np.array([1.0, 1.0, 1.0, rot_weight, rot_weight, rot_weight])

    def _iterate(self, target: np.ndarray, Q: np.ndarray, max_iters: int,
                 lo: np.ndarray, hi: np.ndarray) -> IKResult:
        """Run damped least squares from every row of ``Q`` ([N, dof]) at once, within [lo, hi].

        Stops as soon as one start converges; otherwise returns the best iterate seen.
        """
        chain = self.chain
        n, dof = Q.shape
        damp_eye = self.damping ** 2 * np.eye(dof)
        t_pos, t_rot = target[:3, 3], target[:3, :3]
        best = (np.inf, Q[0].copy(), np.inf, np.inf)
        e = np.empty((n, 6))
        for it in range(max_iters + 1):
            T, J = chain.fk_and_jacobian(Q)
            e[:, :3] = t_pos - T[:, :3, 3]
            e[:, 3:] = rotation_log(t_rot @ T[:, :3, :3].transpose(0, 2, 1))
            sq = e * e
            pe = np.sqrt(sq[:, :3].sum(axis=1))
            re = np.sqrt(sq[:, 3:].sum(axis=1))
            cost = pe + self.rot_weight * re
            k = int(np.argmin(cost))
            if cost[k] < best[0]:
                best = (float(cost[k]), Q[k].copy(), float(pe[k]), float(re[k]))
            reached = (pe <= self.pos_tol) & (re <= self.rot_tol)
            ew = e * self._w
            J *= self._w[:, None]
            # Damped least squares; the damping grows with the error (Sugihara 2011), which keeps
            # far-off and unreachable targets from taking large erratic steps.
            damp = (self.error_damping * (ew * ew).sum(axis=1))[:, None, None] * np.eye(dof) + damp_eye
            pull = self.nullspace_gain * (self.rest - Q)
            dq = self._step(J, ew, damp, pull)
            # Done: the pose is reached and the posture has settled (what is left of the pull once
            # projected onto the null space is below nullspace_tol). A reached iterate is still
            # returned when the iterations run out (converged, the swivel still settling).
            settled = reached & (np.abs(dq).max(axis=1) <= self.nullspace_tol)
            if settled.any() or (reached.any() and it == max_iters):
                pick = settled if settled.any() else reached
                k = int(np.flatnonzero(pick)[np.argmin(cost[pick])])
                return IKResult(Q[k].copy(), float(pe[k]), float(re[k]), it, True)
            if it == max_iters:
                break
            # A joint on its limit that the step pushes outward drops out (zero Jacobian column:
            # with the damping its step is exactly 0) and the step is recomputed for the others.
            free = np.ones((n, dof), dtype=bool)
            for _ in range(3):
                pushing_out = free & (((lo + 1e-9 >= Q) & (dq < 0)) | ((hi - 1e-9 <= Q) & (dq > 0)))
                if not pushing_out.any():
                    break
                free &= ~pushing_out
                dq = self._step(J * free[:, None, :], ew, damp, pull * free) * free
            # Shorten the step (keeping its direction) so that no joint passes a bound and none
            # moves more than max_step: clipping joints one by one would bend the step away from
            # the descent direction and can stall the solver.
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.where(dq > 0, (hi - Q) / dq, np.where(dq < 0, (lo - Q) / dq, np.inf))
            biggest = np.abs(dq).max(axis=1)
            scale = np.minimum(np.minimum(room.min(axis=1), 1.0),
                               self.max_step / np.maximum(biggest, 1e-12))
            Q = np.minimum(np.maximum(Q + dq * scale[:, None], lo), hi)
        _, q_best, pe_b, re_b = best
        return IKResult(q_best, pe_b, re_b, max_iters, False)

    @staticmethod
    def _step(J: np.ndarray, e: np.ndarray, damp: np.ndarray, pull: np.ndarray) -> np.ndarray:
        """(J^T J + damp)^-1 J^T (e - J pull) + pull: the task step plus the rest-pose pull
        projected onto the task's (damped) null space."""
        Jt = J.transpose(0, 2, 1)
        rhs = Jt @ (e - (J @ pull[:, :, None])[:, :, 0])[:, :, None]
        return np.linalg.solve(Jt @ J + damp, rhs)[:, :, 0] + pull

    def solve(self, target: np.ndarray, q_init: np.ndarray | None = None, *,
              restarts: int = 0, max_iters: int | None = None,
              max_delta: float | None = None) -> IKResult:
        """Joint angles reaching ``target`` (4x4 pose of the end effector in the base frame).

        ``q_init`` is the warm start (the previous frame's solution); without it the solver starts
        from the rest posture. ``restarts`` > 0 retries from fixed seeds when the first attempt
        does not converge (for cold solves; per-frame teleop keeps 0 for continuity).
        ``max_delta`` bounds how far (rad, per joint) the answer may move from ``q_init``: a target
        that jumps (tracking glitch, an unreachable target crossing a singularity) is followed over
        several frames instead of in one jump. A non-finite target returns the warm start
        unchanged, flagged not converged.
        """
        target = np.asarray(target, dtype=float)
        if target.shape != (4, 4):
            raise ValueError(f"IK target must be a 4x4 pose, got shape {target.shape}")
        q0 = self.rest.copy() if q_init is None else self.chain.clip(q_init)
        if not np.all(np.isfinite(q0)):
            q0 = self.rest.copy()
        if not np.all(np.isfinite(target)):
            return IKResult(q0, float("inf"), float("inf"), 0, False)
        iters = self.max_iters if max_iters is None else int(max_iters)
        lo, hi = self.chain.lower, self.chain.upper
        if max_delta is not None:
            lo, hi = np.maximum(lo, q0 - max_delta), np.minimum(hi, q0 + max_delta)
        result = self._iterate(target, q0[None], iters, lo, hi)
        if restarts > 0 and max_delta is None and not result.converged:
            # All restarts run as one batch: about the cost of a single start in numpy.
            attempt = self._iterate(target, self._seeds[:restarts].copy(), self.restart_iters,
                                    self.chain.lower, self.chain.upper)
            if attempt.pos_err + self.rot_weight * attempt.rot_err < \
                    result.pos_err + self.rot_weight * result.rot_err:
                result = attempt
        return result
