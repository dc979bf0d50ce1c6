"""lara-demo, the README's main command: the bundled policy served by lara-serve (ORT) and
evaluated by lara-robot eval on the simulated G1, ending with the success summary."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lara_g1.apps import demo
from lara_g1.core.observation import Observation
from lara_g1.lara.policies import FOR_TASK, bundled_policy, policy_for_task
from lara_g1.robot.evaluation import load_tasks
from lara_g1.runtime.engines import load_engine


@pytest.mark.parametrize("task", sorted(load_tasks()))
def test_each_task_has_a_verified_serving_only_bundled_policy(task):
    path = policy_for_task(task)
    assert path.name == FOR_TASK[task]
    assert not (path / "model.safetensors").exists()          # serving-only: a few MB
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert size < 12e6, size
    engine = load_engine(path, "ort", threads=1)               # verifies every file against the manifest
    meta = engine.metadata
    assert meta["embodiment"]["name"] == "g1" and meta["horizon"] == 8
    obs = Observation(images={"head": np.zeros((224, 224, 3), np.uint8)}, state=np.zeros(28, np.float32),
                      instruction=load_tasks()[task].instruction)
    actions = engine.infer([obs]).actions
    assert actions.shape == (1, 8, 28) and np.isfinite(actions).all()


def test_unknown_bundled_policy_or_task_is_refused():
    with pytest.raises(FileNotFoundError, match="no bundled policy 'nope'"):
        bundled_policy("nope")
    with pytest.raises(FileNotFoundError, match="no bundled policy for task 'fold'"):
        policy_for_task("fold")


@pytest.mark.timeout(600)
def test_demo_serves_the_bundled_policy_and_ends_with_a_success_summary(tmp_path, capsys):
    assert demo.main(["--workdir", str(tmp_path), "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "dashboards: lara-serve http://127.0.0.1:" in out and "lara-robot http://127.0.0.1:" in out
    assert "pick_place, 1 trial(s) on unseen scenes" in out and "Pick" in out and "Place" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["trials"] == 1 and metrics["info"]["seed"] == demo.DEMO_SEED
    trial = metrics["per_trial"][0]
    assert trial["chunks"] > 0                                     # chunks flowed
    assert not any(k.startswith("stale_") for k in trial["interventions"])   # no watchdog
    assert trial["end_reason"] in ("stopped", "end of duration")     # full success or the trial's time
