"""The whole loop at CI size, each step the real command in its own process: scripted-expert
demonstrations on the simulated G1 (DDS on loopback) -> lara-train joint -> lara-export --onnx ->
lara-serve --engine ort -> lara-robot run --sim with the safety filter and lara-robot eval --sim;
then the results table."""
from __future__ import annotations

import json
import sys

import pytest

from lara_g1.apps import loop
from lara_g1.lara.data.validate import validate_dataset

pytestmark = pytest.mark.timeout(900)


def test_demos_train_export_serve_and_run_in_sim(tmp_path):
    dataset = tmp_path / "demos"
    report = loop.record_demos(dataset, "pick_place", 2, tmp_path / "demos.json", tmp_path / "demos.log")
    assert report["episodes_saved"] == 2
    assert validate_dataset(dataset) == []
    attempts = report["attempts"]
    assert all(a["stages"] == {"Pick": True, "Full": True} for a in attempts if a["kept"])
    assert report["scene_seeds"][:2] == [0, 1] and report["error"] is None
    assert report["outcome"] == "complete"

    # action-free video (its own dataset, its own instruction) and LAM stage 1 on both
    video = tmp_path / "video"
    loop.record_video(video, "pick_place", 1, tmp_path, seed=loop.VIDEO_SEEDS["pick_place"])
    assert validate_dataset(video) == []
    from lara_g1.lara.data.lerobot import LeRobotDataset
    from lara_g1.teleop.sources.expert import explore_instruction
    assert LeRobotDataset(video).tasks == [explore_instruction("pick_place")]
    loop.train_lam(dataset, video, tmp_path / "lam", tmp_path / "lam.log", preset="tiny", steps=2, seed=0)
    summary = json.loads((tmp_path / "lam" / "train_summary.json").read_text())
    assert summary["frames"]["video"] > 0 and summary["latent"]["codebook_size"] == 128

    bundle = tmp_path / "policy"
    loop.train_policy(dataset, bundle, tmp_path / "train.log", preset="tiny", steps=2, seed=0,
                      extra=["--lam", str(tmp_path / "lam")], batch_size=4)
    loop.export_onnx(bundle, tmp_path / "export.log")
    assert (bundle / "manifest.json").exists()

    run_json = tmp_path / "run.json"
    with loop.serve(bundle, tmp_path / "serve.log") as address:
        loop.run_step([sys.executable, "-m", "lara_g1.robot.cli", "run", "--task", "pick_place", "--sim",
                       "--server", address, "--domain", str(loop.sim_domain()), "--duration", "6",
                       "--dashboard", "off", "--json", str(run_json)],
                      tmp_path / "robot.log", "lara-robot run --sim")
        metrics = loop.evaluate(address, "pick_place", 1, tmp_path / "eval", tmp_path / "eval.log", trial_s=3,
                                instruction="Put the green tomato into the green basket.")
    result = json.loads(run_json.read_text())
    assert result["reason"] == "end of duration"            # ended cleanly, not by the watchdog
    assert result["scheduler"]["chunks"] >= 3               # chunks flowed from lara-serve
    watchdog = {k: v for k, v in result["interventions"].items() if k.startswith("stale_")}
    assert not watchdog, result["interventions"]

    assert metrics["trials"] == 1 and set(metrics["metrics"]) == {"Pick", "Place", "Full"}
    assert metrics["info"]["seed"] == 1000        # evaluation scenes are not the demonstrated ones
    assert metrics["info"]["instruction"] == "Put the green tomato into the green basket."
    trial = metrics["per_trial"][0]               # each trial keeps what its control loop measured
    assert trial["chunks"] >= 1 and trial["ticks"] > 0 and trial["period_ms_p50"] > 0

    rows = [loop.Row("expert", {"pick_place": loop.expert_metrics(report)}), loop.Row("policy", {"pick_place": metrics})]
    table = loop.results_table(rows, ("pick_place",))
    assert "| expert | " in table and "pick_place: Place" in table and "| policy |" in table


def test_the_recorders_report_says_how_the_session_ended(tmp_path):
    """lara-teleop record --report writes the session's outcome as a SessionOutcome value."""
    from types import SimpleNamespace

    from lara_g1.teleop.cli import write_report
    from lara_g1.teleop.session import SessionOutcome, SessionReport

    args = SimpleNamespace(task="pour", source="expert", robot="sim", out=tmp_path / "demos")
    write_report(tmp_path / "report.json", args, SessionReport(outcome=SessionOutcome.TOO_MANY_FAILED), [])
    body = json.loads((tmp_path / "report.json").read_text())
    assert SessionOutcome(body["outcome"]) is SessionOutcome.TOO_MANY_FAILED


def test_collect_demos_stops_on_the_recorders_outcome(tmp_path, monkeypatch):
    """A session that met as many failed attempts as episodes ends the collection (read from its
    report's outcome): no further session is recorded, and the shortfall is an error."""
    def record_demos(*args, **kwargs):
        raise AssertionError("another recording session was started")
    monkeypatch.setattr(loop, "record_demos", record_demos)
    report = {"task": "pour", "episodes_saved": 1, "failed_discarded": 3, "outcome": "too many failed",
              "scene_seeds": [0, 1, 2, 3], "attempts": [], "error": None}
    (tmp_path / "demos_pour_0.json").write_text(json.dumps(report))
    with pytest.raises(loop.LoopError, match="saved only 1 of 3"):
        loop.collect_demos(tmp_path / "demos", "pour", 3, tmp_path)
