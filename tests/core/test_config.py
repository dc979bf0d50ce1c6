"""The one way configs load (core/config.py): a bundled name or a path, YAML, a pydantic schema;
every error names the file and the field, and is the config's own ConfigError subclass."""
from __future__ import annotations

import dataclasses

import pytest
import yaml
from pydantic import Field

from lara_g1.core.config import ConfigModel, config_dataclass, config_path, load_config
from lara_g1.core.errors import ConfigError


class DemoError(ConfigError):
    pass


@config_dataclass
class Demo(ConfigModel):
    config_error = DemoError

    rate_hz: float = Field(30.0, gt=0.0)
    name: str = "demo"


def write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def bundled_with(relative: str, edit) -> dict:
    raw = yaml.safe_load(config_path(relative).read_text())
    edit(raw)
    return raw


def test_unknown_key_is_refused_naming_the_file_and_the_key(tmp_path):
    path = write(tmp_path, {"rate_hz": 10, "rate_hx": 3})
    with pytest.raises(DemoError, match=rf"^{path}: rate_hx: unknown key$"):
        load_config(Demo, path, kind="demo config")


def test_wrong_type_names_the_field_and_the_value(tmp_path):
    path = write(tmp_path, {"rate_hz": "fast"})
    with pytest.raises(DemoError, match=rf"^{path}: rate_hz: input should be a valid number.*got 'fast'$"):
        load_config(Demo, path, kind="demo config")


def test_every_problem_is_named_and_non_finite_numbers_are_refused(tmp_path):
    path = write(tmp_path, "rate_hz: .nan\nname: [a]\n")
    with pytest.raises(DemoError) as info:
        load_config(Demo, path, kind="demo config")
    assert "rate_hz: input should be a finite number" in str(info.value)
    assert "name: input should be a valid string" in str(info.value)


def test_missing_file_and_unknown_bundled_name_are_clear(tmp_path):
    with pytest.raises(DemoError, match=rf"^{tmp_path / 'none.yaml'}: no such demo config file$"):
        load_config(Demo, tmp_path / "none.yaml", kind="demo config")
    with pytest.raises(DemoError, match=r"no demo config named 'fast' \(configs/control/fast.yaml\); "
                                        r"bundled: default, tasks; or give a .yaml path"):
        load_config(Demo, "fast", bundled="control/{name}.yaml", kind="demo config")


def test_bad_yaml_and_a_non_mapping_are_named(tmp_path):
    with pytest.raises(DemoError, match=rf"^{tmp_path / 'bad.yaml'}: cannot read YAML"):
        load_config(Demo, write(tmp_path, "rate_hz: [1,\n", "bad.yaml"), kind="demo config")
    with pytest.raises(DemoError, match="list.yaml: expected a mapping, got list"):
        load_config(Demo, write(tmp_path, [1, 2], "list.yaml"), kind="demo config")


def test_a_bundled_name_and_an_explicit_path_load_the_same(tmp_path):
    from lara_g1.robot.control import ControlConfig

    by_name = ControlConfig.load("default")
    by_path = ControlConfig.load(config_path("control/default.yaml"))
    assert by_name == by_path and by_name.source == str(config_path("control/default.yaml"))
    copy = write(tmp_path, yaml.safe_load(config_path("control/default.yaml").read_text()), "copy.yml")
    loaded = ControlConfig.load(str(copy))
    assert loaded.source == str(copy) and dataclasses.replace(loaded, source=by_name.source) == by_name


def test_replace_validates_and_raises_the_config_error():
    demo = Demo()
    assert demo.replace(rate_hz=5).rate_hz == 5.0
    with pytest.raises(DemoError, match=r"^Demo with \['rate_hz'\] changed: rate_hz: must be > 0.0, got 0$"):
        demo.replace(rate_hz=0)
    with pytest.raises(ValueError, match="rate_hz"):
        dataclasses.replace(demo, rate_hz=-1.0)            # dataclasses.replace validates too
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo.rate_hz = 1.0


# One case per config class: a bad value in its YAML names the file, the field path and the
# class's own error.
def test_control_safety_scheduler_and_run_sections(tmp_path):
    from lara_g1.robot.control import ControlConfig, ControlConfigError, ControlError
    from lara_g1.robot.safety import SafetyConfig, SafetyConfigError

    cases = [("safety", "ramp_in_s", 0.5, "safety.ramp_in_s: must be >= 1.0, got 0.5"),
             ("safety", "max_velocity", {"head": -1}, "safety.max_velocity.head: must be > 0.0, got -1"),
             ("scheduler", "policy_hz", 0, "scheduler.policy_hz: must be > 0.0, got 0"),
             ("run", "stats_window", 5, "run.stats_window: must be >= 10, got 5"),
             ("run", "start_at_ready", "yes", "run.start_at_ready: input should be a valid boolean")]
    for section, key, value, message in cases:
        path = write(tmp_path, bundled_with("control/default.yaml",
                                            lambda r, s=section, k=key, v=value: r[s].update({k: v})))
        with pytest.raises(ControlConfigError, match=rf"^{path}: {message}") as info:
            ControlConfig.load(path)
        assert isinstance(info.value, ControlError) and isinstance(info.value, ConfigError)
    path = write(tmp_path, bundled_with("control/default.yaml", lambda r: r["safety"].update(fade_s=9)))
    with pytest.raises(SafetyConfigError, match=rf"^{path}: safety.fade_s: must be <= 3.0, got 9$"):
        SafetyConfig.load(path)


def test_g1_robot_config(tmp_path):
    from lara_g1.robot.g1 import G1Config, G1ConfigError

    path = write(tmp_path, bundled_with("robot/g1_sim.yaml", lambda r: r["dds"].update(domain_id=300)))
    with pytest.raises(G1ConfigError, match=rf"^{path}: dds.domain_id: must be <= 232, got 300$"):
        G1Config.load(path)
    path = write(tmp_path, bundled_with("robot/g1_sim.yaml", lambda r: r["gains"].update(kd=[1.0] * 6)))
    with pytest.raises(G1ConfigError, match=rf"^{path}: gains.kd needs 7 values"):
        G1Config.load(path)


def test_embodiment_file(tmp_path):
    from lara_g1.core.embodiment import EmbodimentError, load_embodiment_file

    path = write(tmp_path, bundled_with("embodiment/g1.yaml", lambda r: r["groups"]["head"].update(size=0)))
    with pytest.raises(EmbodimentError, match=rf"^{path}: groups.head.size: must be > 0, got 0$"):
        load_embodiment_file(path)


def test_policy_preset_and_lam_config(tmp_path):
    from lara_g1.lara.lam.config import LamConfig, LamConfigError
    from lara_g1.lara.model.config import PolicyConfig

    path = write(tmp_path, bundled_with("presets/tiny.yaml", lambda r: r.update(dit_heads=0)))
    with pytest.raises(ConfigError, match=rf"^{path}: dit_heads: must be > 0, got 0$"):
        load_config(PolicyConfig, path, kind="preset")
    with pytest.raises(LamConfigError, match=r"^lam/config.json: codebook_size: must be >= 1, got 0$"):
        LamConfig.from_dict({**LamConfig().to_dict(), "codebook_size": 0}, "lam/config.json")


def test_kinematics_files(tmp_path):
    from lara_g1.robot.kinematics import KinematicsError, load_arm_chains, load_head_mount, load_inspire_hand

    path = write(tmp_path, bundled_with("kinematics/g1_arms.yaml",
                                        lambda r: r["arms"]["left"]["joints"][1].update(xyz=[0, 1])))
    with pytest.raises(KinematicsError, match=rf"^{path}: arms.left.joints\[1\].xyz\[2\]: missing$"):
        load_arm_chains(path)
    path = write(tmp_path, bundled_with("kinematics/g1_head.yaml", lambda r: r["camera"].update(fov=90)))
    with pytest.raises(KinematicsError, match=rf"^{path}: camera.fov: unknown key$"):
        load_head_mount(path)
    path = write(tmp_path, bundled_with("kinematics/inspire_hand.yaml",
                                        lambda r: r["actuators"][2].update(closed=0.0)))
    with pytest.raises(KinematicsError, match=rf"^{path}: actuators\[2\]: actuator 'middle' has open == closed$"):
        load_inspire_hand(path)


def test_retarget_config(tmp_path):
    from lara_g1.teleop.retarget.retargeter import RetargetConfig, RetargetConfigError, RetargetError

    path = write(tmp_path, bundled_with("kinematics/retarget.yaml", lambda r: r["arm"].update(motion_scale=5)))
    with pytest.raises(RetargetConfigError, match=rf"^{path}: arm.motion_scale: must be <= 3.0, got 5$"):
        RetargetConfig.load(path)
    path = write(tmp_path, bundled_with("kinematics/retarget.yaml", lambda r: r.pop("head")))
    with pytest.raises(RetargetError, match=rf"^{path}: head: missing$"):
        RetargetConfig.load(path)


def test_tasks_and_camera_config(tmp_path):
    from lara_g1.robot.cli import _camera_config
    from lara_g1.robot.control import ControlConfigError
    from lara_g1.robot.evaluation import EvaluationError, load_tasks

    path = write(tmp_path, bundled_with("control/tasks.yaml", lambda r: r["pour"].update(stages=["Full", "Pour"])))
    with pytest.raises(EvaluationError, match=rf"^{path}: pour: stages must be distinct and end with 'Full'"):
        load_tasks(path)
    assert _camera_config(str(write(tmp_path, {"type": "sim", "domain_id": 7}, "cam.yaml"))) == \
        {"type": "sim", "domain_id": 7}
    path = write(tmp_path, {"type": "webcam"}, "cam.yaml")
    with pytest.raises(ControlConfigError, match=rf"^{path}: type: input should be 'realsense', 'sim' or 'replay'"):
        _camera_config(str(path))
