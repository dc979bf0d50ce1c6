"""The simulated G1's physics and task success detection, in process (no DDS, no policy)."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest

from lara_g1.robot.kinematics import load_arm_chains
from lara_g1.robot.sim.world import SimWorld


def arm_cmd(world: SimWorld, q28: np.ndarray, blend: float = 1.0) -> None:
    world.set_arm_command(q28[world.arm_idx], np.full(14, 80.0), np.full(14, 3.0), blend)


def test_model_matches_the_kinematics_chains():
    world = SimWorld("pick_place")
    q = world.emb.default_pose.copy()
    q[:14] = np.random.default_rng(0).uniform(-0.6, 0.6, 14)
    world.set_joint_positions(q)
    chains = load_arm_chains()
    torso = world.data.body("torso_link")
    for side, sl in (("left", slice(0, 7)), ("right", slice(7, 14))):
        T = chains[side].fk(q[sl])
        palm = world.data.body(chains[side].ee_name)
        np.testing.assert_allclose(torso.xmat.reshape(3, 3) @ T[:3, 3] + torso.xpos, palm.xpos, atol=1e-6)


def test_blend_weight_zero_holds_the_default_pose_and_one_tracks():
    world = SimWorld("pick_place")
    target = world.emb.default_pose.copy()
    target[0], target[7] = -0.8, -0.8
    arm_cmd(world, target, blend=0.0)
    world.step(500)
    q, _ = world.joint_state()
    assert abs(q[0] - world.emb.default_pose[0]) < 0.1
    arm_cmd(world, target, blend=1.0)
    world.step(750)
    q, _ = world.joint_state()
    assert abs(q[0] - (-0.8)) < 0.12 and abs(q[7] - (-0.8)) < 0.12


def test_seeds_randomise_object_poses_reproducibly():
    world = SimWorld("pick_place", seed=1)
    a = world.free_pose("tomato")[0], world.static_body_pos("basket")
    world.reset(2)
    b = world.free_pose("tomato")[0], world.static_body_pos("basket")
    world.reset(1)
    c = world.free_pose("tomato")[0], world.static_body_pos("basket")
    assert not np.allclose(a[0], b[0]) and not np.allclose(a[1], b[1])
    np.testing.assert_allclose(a[0], c[0])
    np.testing.assert_allclose(a[1], c[1])


def test_pick_place_full_fires_when_the_tomato_lies_in_the_basket():
    world = SimWorld("pick_place", seed=4)
    world.step(100)
    assert world.status()["stages"] == {"Pick": False, "Full": False}
    basket = world.static_body_pos("basket")
    world.set_free_pose("tomato", basket + [0.0, 0.0, 0.05])
    world.step(400)  # it falls into the basket and settles
    assert world.status()["stages"]["Full"] is True
    world.reset(4)
    assert world.status()["stages"] == {"Pick": False, "Full": False}


def test_pick_fires_when_a_closed_hand_lifts_the_tomato_and_release_drops_it():
    world = SimWorld("pick_place", seed=0)
    q = world.emb.default_pose.copy()
    arm_cmd(world, q)
    world.step(50)
    # Put the tomato at the right hand's grasp point, then close the hand around it.
    world.set_free_pose("tomato", world.grasp_point("right"))
    right = world.emb.group("right_hand").slice
    q[right] = 0.0
    world.set_hand_targets(np.ones(6), q[right])
    world.step(300)
    assert world.holder("tomato") == "right"
    q[7] = -0.9  # right shoulder pitch: lift
    arm_cmd(world, q)
    world.step(500)
    assert world.status()["stages"]["Pick"] is True
    assert world.status()["stages"]["Full"] is False
    lifted = world.free_pose("tomato")[0][2]
    world.set_hand_targets(np.ones(6), np.ones(6))
    world.step(500)
    assert world.holder("tomato") is None
    z = world.free_pose("tomato")[0][2]
    assert z < lifted - 0.03 and z == pytest.approx(world.task.rest_z, abs=0.01)  # released, it fell


def test_a_closed_hand_far_from_objects_grasps_nothing():
    world = SimWorld("pick_place", seed=0)
    far = world.grasp_point("right") + np.array([0.0, 0.25, 0.0])   # between the hands, 20+ cm from both
    world.set_free_pose("tomato", [far[0], 0.0, world.free_pose("tomato")[0][2]])
    world.set_hand_targets(np.zeros(6), np.zeros(6))
    world.step(300)
    assert world.closure("right") > 0.5 and world.closure("left") > 0.5
    assert world.attached == {}


def _quat_of(R: np.ndarray) -> np.ndarray:
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R).reshape(9))
    return q


def test_pour_stages():
    world = SimWorld("pour", seed=2)
    world.step(50)
    world.set_free_pose("cup", world.grasp_point("left"))
    world.set_free_pose("bottle", world.grasp_point("right"))
    world.set_hand_targets(np.zeros(6), np.zeros(6))
    world.step(300)
    stages = world.status()["stages"]
    assert stages == {"Grasp-Left": True, "Grasp-Right": True, "Full": False}
    # Tilt the held bottle 90 degrees (held at a new relative pose) and put the cup under its mouth.
    site = world._site_pose("right")
    tilted = np.eye(4)
    tilted[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # bottle axis (z) -> world -y
    tilted[:3, 3] = site[:3, 3]
    world.attached["bottle"] = ("right", np.linalg.inv(site) @ tilted)
    world.step(1)
    mouth = tilted[:3, 3] + np.array([0.0, -1.0, 0.0]) * (world.task.BOTTLE[1] + 0.03)
    world.set_hand_targets(np.ones(6), np.zeros(6))  # the left hand lets the cup go
    world.step(300)
    world.set_free_pose("cup", [mouth[0], mouth[1], mouth[2] - world.task.CUP[1] - 0.05])
    world.step(1)
    assert world.status()["stages"]["Full"] is True


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown sim task"):
        SimWorld("juggle")


@pytest.mark.parametrize("task, regions", [("pick_place", {"tomato": "TOMATO_REGION"}),
                                           ("pour", {"bottle": "BOTTLE_REGION", "cup": "CUP_REGION"})])
def test_ready_pose_leaves_the_head_camera_a_clear_view_of_the_objects(task, regions):
    """At the ready pose (where every demonstration and policy run starts) no part of either arm is
    in the head camera's image, and each object is in view wherever its region puts it: the
    policy's first frame shows the whole scene (the old pose hid the tomato behind the right hand)."""
    world = SimWorld(task, seed=0)
    bodies = [world.model.body(i).name for i in range(world.model.nbody)]
    renderer = mujoco.Renderer(world.model, 224, 224)
    renderer.enable_segmentation_rendering()
    try:
        for obj, region in regions.items():
            (x0, x1), (y0, y1) = getattr(world.task, region)
            z = world.free_pose(obj)[0][2]          # resting on the table, as placed
            obj_geoms = [g for g in range(world.model.ngeom) if bodies[world.model.geom_bodyid[g]] == obj]
            for x in (x0, x1):
                for y in (y0, y1):
                    world.set_free_pose(obj, [x, y, z])
                    mujoco.mj_forward(world.model, world.data)
                    renderer.update_scene(world.data, camera="head")
                    seg = renderer.render()
                    geoms = seg[..., 0][seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM]
                    seen = {bodies[world.model.geom_bodyid[g]] for g in np.unique(geoms)}
                    arms = sorted(b for b in seen if b.startswith(("left_", "right_")))
                    assert not arms, f"{obj} at ({x}, {y}): the camera sees {arms}"
                    pixels = int(np.isin(geoms, obj_geoms).sum())
                    assert pixels >= 40, f"{obj} at ({x}, {y}): {pixels} pixels in view"
    finally:
        renderer.close()
