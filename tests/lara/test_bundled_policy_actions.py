"""The bundled policy serves the same actions, bit for bit, as when it shipped
(tests/data/bundled_policy_actions.npz, captured with these inputs then): a change to
preprocessing, the engines or the graphs that moves a shipped policy's actions shows here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lara_g1.core.observation import Observation, make_noise
from lara_g1.lara.policies import FOR_TASK, policy_for_task

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "bundled_policy_actions.npz"


@pytest.mark.parametrize("task", sorted(FOR_TASK))
def test_bundled_policy_serves_the_recorded_actions(task):
    from lara_g1.runtime.engines import load_engine

    engine = load_engine(policy_for_task(task), "ort", threads=1, seed=0)
    try:
        meta, rng = engine.metadata, np.random.default_rng(123)
        lower, upper = (np.array(meta["embodiment"][k], np.float32) for k in ("lower", "upper"))
        obs = [Observation(images={cam: rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                                   for cam, (h, w) in meta["cameras"].items()},
                           state=rng.uniform(lower, upper).astype(np.float32)) for _ in range(2)]
        noise = make_noise(2, meta["horizon"], meta["max_action_dim"], seed=7)
        actions = engine.infer(obs, noise=noise).actions
    finally:
        engine.close()
    np.testing.assert_array_equal(actions, np.load(REFERENCE)[task])
