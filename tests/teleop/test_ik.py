"""Arm IK: reachable targets reached within limits, tracking continuity, graceful degradation."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.core.embodiment import load_embodiment
from lara_g1.robot.kinematics import load_arm_chains, rotation_angle
from lara_g1.teleop.retarget.arm_ik import ArmIK

SIDES = ("left", "right")


@pytest.fixture(scope="module")
def chains():
    return load_arm_chains()


def _ik(chain):
    emb = load_embodiment("g1")
    return ArmIK(chain, rest=emb.default_pose[emb.group(f"{chain.side}_arm").slice])


def _pose_error(chain, q, target):
    T = chain.fk(q)
    return np.linalg.norm(T[:3, 3] - target[:3, 3]), rotation_angle(T[:3, :3].T @ target[:3, :3])


@pytest.mark.parametrize("side", SIDES)
def test_reaches_random_reachable_targets_cold(chains, side):
    chain = chains[side]
    ik = _ik(chain)
    rng = np.random.default_rng(100 + len(side))
    for _ in range(40):
        q_true = rng.uniform(chain.lower, chain.upper)
        target = chain.fk(q_true)
        res = ik.solve(target, restarts=32)
        assert chain.within_limits(res.q), res.q
        pos, rot = _pose_error(chain, res.q, target)      # checked by FK, not by the solver's word
        assert pos < 0.01 and rot < np.radians(3.0), (q_true, pos, np.degrees(rot))


@pytest.mark.parametrize("side", SIDES)
def test_tracks_a_smooth_trajectory_warm_started(chains, side):
    chain = chains[side]
    ik = _ik(chain)
    rng = np.random.default_rng(7)
    qa = rng.uniform(0.6 * chain.lower, 0.6 * chain.upper)
    qb = rng.uniform(0.6 * chain.lower, 0.6 * chain.upper)
    q = ik.solve(chain.fk(qa), restarts=32).q
    for s in np.linspace(0.0, 1.0, 120):
        target = chain.fk((1 - s) * qa + s * qb)
        res = ik.solve(target, q, max_iters=15)
        pos, rot = _pose_error(chain, res.q, target)
        assert pos < 0.01 and rot < np.radians(3.0)
        assert chain.within_limits(res.q)
        assert np.abs(res.q - q).max() < 0.2            # consecutive frames, consecutive solutions
        q = res.q


@pytest.mark.parametrize("side", SIDES)
def test_unreachable_target_degrades_gracefully(chains, side):
    chain = chains[side]
    ik = _ik(chain)
    shoulder = chain.joint_frames(np.zeros(7))[0, :3, 3]
    reach = np.linalg.norm(chain.fk(np.random.default_rng(0).uniform(
        chain.lower, chain.upper, (5000, 7)))[:, :3, 3] - shoulder, axis=1).max()
    q = ik.rest.copy()
    start = chain.fk(q)
    direction = start[:3, 3] - shoulder
    direction /= np.linalg.norm(direction)
    for k in range(90):                                 # walk the target 0.9 m straight outwards
        target = start.copy()
        target[:3, 3] += direction * 0.01 * k
        res = ik.solve(target, q, max_iters=15, max_delta=0.1)
        assert np.all(np.isfinite(res.q)) and chain.within_limits(res.q)
        assert np.abs(res.q - q).max() <= 0.1 + 1e-9    # no jump
        q = res.q
    hand = chain.fk(q)[:3, 3]
    dist = np.linalg.norm(target[:3, 3] - shoulder)
    assert np.linalg.norm(hand - target[:3, 3]) < dist - reach + 0.06   # near the closest reachable
    to_hand = (hand - shoulder) / np.linalg.norm(hand - shoulder)
    assert to_hand @ direction > 0.95                   # the arm reaches towards the target


def test_target_jump_is_followed_over_several_frames(chains):
    chain = chains["left"]
    ik = _ik(chain)
    q = ik.rest.copy()
    far = chain.fk(np.array([-1.2, 0.6, 0.4, 0.3, 0.5, -0.4, 0.3]))
    steps = 0
    while True:
        res = ik.solve(far, q, max_iters=15, max_delta=0.05)
        assert np.abs(res.q - q).max() <= 0.05 + 1e-9
        q = res.q
        steps += 1
        if res.converged or steps > 100:
            break
    assert res.converged and steps > 5


def test_non_finite_target_keeps_the_previous_solution(chains):
    chain = chains["right"]
    ik = _ik(chain)
    q_prev = ik.rest + 0.1
    target = chain.fk(q_prev)
    target[0, 3] = np.nan
    res = ik.solve(target, q_prev)
    assert not res.converged
    np.testing.assert_array_equal(res.q, chain.clip(q_prev))
    with pytest.raises(ValueError, match="4x4"):
        ik.solve(np.eye(3), q_prev)


def test_warm_start_outside_limits_is_clipped(chains):
    chain = chains["left"]
    ik = _ik(chain)
    target = chain.fk(ik.rest)
    res = ik.solve(target, chain.upper + 1.0, restarts=32)
    assert chain.within_limits(res.q) and res.converged


@pytest.mark.parametrize("side", SIDES)
def test_one_hand_pose_gives_one_arm_posture_whatever_the_path(chains, side):
    """The redundant elbow swivel settles towards the rest posture: the same wrist pose reached
    from different arm postures (other swivels, as a previous episode may leave them) ends in the
    same joint angles, which is what makes demonstrations consistent in joint space."""
    chain = chains[side]
    ik = _ik(chain)
    rng = np.random.default_rng(3)
    q_goal = ik.rest + rng.uniform(-0.3, 0.3, chain.dof)
    target = chain.fk(ik.solve(chain.fk(q_goal), ik.rest, max_iters=200).q)
    finals = []
    for _ in range(4):
        q = chain.clip(q_goal + rng.uniform(-0.6, 0.6, chain.dof))    # another posture nearby
        for _frame in range(60):                                        # 2 s of frames at 30 fps
            q = ik.solve(target, q, max_iters=15, max_delta=0.15).q
        pos, rot = _pose_error(chain, q, target)
        assert pos < 1e-3 and rot < np.radians(0.5)
        finals.append(q)
    spread = np.ptp(np.array(finals), axis=0).max()
    assert spread < 0.02, (spread, np.array(finals))
