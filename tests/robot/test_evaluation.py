"""The paper's G1-Real metrics computed from per-stage trial records, and the files written."""
from __future__ import annotations

import csv
import json

import pytest

from lara_g1.robot.evaluation import (
    EvaluationError,
    TrialRecord,
    compute_metrics,
    format_table,
    load_tasks,
    write_results,
)

TASKS = load_tasks()


def trials(task, rows):
    return [dict(zip(TASKS[task].stages, map(bool, r))) for r in rows]


def test_pick_place_metrics():
    # 10 trials: 8 picks, 6 of them placed
    rows = [(1, 1)] * 6 + [(1, 0)] * 2 + [(0, 0)] * 2
    m = compute_metrics(TASKS["pick_place"], trials("pick_place", rows))
    assert m["rates"] == {"Pick": 0.8, "Full": 0.6}
    assert m["metrics"]["Pick"] == pytest.approx(0.8)
    assert m["metrics"]["Full"] == pytest.approx(0.6)
    assert m["metrics"]["Place"] == pytest.approx(0.75)        # Full / Pick


def test_pour_metrics():
    # 10 trials: left grasped 8, right grasped 5, full 3
    rows = [(1, 1, 1)] * 3 + [(1, 1, 0)] * 1 + [(1, 0, 0)] * 4 + [(0, 1, 0)] * 1 + [(0, 0, 0)]
    m = compute_metrics(TASKS["pour"], trials("pour", rows))
    assert m["metrics"]["Grasp-Left"] == pytest.approx(0.8)
    assert m["metrics"]["Grasp-Right"] == pytest.approx(0.5)
    assert m["metrics"]["Full"] == pytest.approx(0.3)
    assert m["metrics"]["Pour"] == pytest.approx(0.3 / (0.8 * 0.5))   # Full / (GL x GR)


def test_undefined_conditional_metric_is_none():
    m = compute_metrics(TASKS["pick_place"], trials("pick_place", [(0, 0)] * 3))
    assert m["metrics"]["Place"] is None
    assert "-" in format_table(m)


def test_inconsistent_or_incomplete_trials_are_refused():
    with pytest.raises(EvaluationError, match="without every earlier stage"):
        compute_metrics(TASKS["pick_place"], [{"Pick": False, "Full": True}])
    with pytest.raises(EvaluationError, match="lacks stages"):
        compute_metrics(TASKS["pour"], [{"Grasp-Left": True, "Full": False}])
    with pytest.raises(EvaluationError, match="no trials"):
        compute_metrics(TASKS["pour"], [])


def test_results_written_as_json_and_csv(tmp_path):
    task = TASKS["pour"]
    records = [TrialRecord(i, s, "end of duration", 12.5) for i, s in
               enumerate(trials("pour", [(1, 1, 1), (1, 0, 0), (1, 1, 0), (0, 0, 0)]))]
    summary = write_results(tmp_path, task, records, {"sim": True})
    loaded = json.loads((tmp_path / "metrics.json").read_text())
    assert loaded["metrics"] == summary["metrics"]
    assert loaded["metrics"]["Pour"] == pytest.approx(0.25 / (0.75 * 0.5))
    assert loaded["info"] == {"sim": True}
    assert [t["Grasp-Left"] for t in loaded["per_trial"]] == [True, True, True, False]
    with open(tmp_path / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Full"] for r in rows] == ["1", "0", "0", "0"]
    with open(tmp_path / "metrics.csv") as fh:
        metrics = {r["metric"]: r["value"] for r in csv.DictReader(fh)}
    assert metrics["Grasp-Right"] == "0.5000" and metrics["Full"] == "0.2500"
    table = format_table(summary)
    assert "Grasp-Left" in table and "3/4" in table


def test_operator_is_not_asked_full_after_a_failed_stage():
    asked = []

    def answers(seq):
        it = iter(seq)
        return lambda q: (asked.append(q), next(it))[1]

    from lara_g1.robot.evaluation import ask_stages

    assert ask_stages(TASKS["pour"], answers([True, False])) == {
        "Grasp-Left": True, "Grasp-Right": False, "Full": False}
    assert len(asked) == 2
    asked.clear()
    assert ask_stages(TASKS["pick_place"], answers([True, True])) == {"Pick": True, "Full": True}
    assert "'Full'" in asked[-1]


def test_wilson_interval_matches_the_textbook_values():
    from lara_g1.robot.evaluation import EvaluationError, wilson_interval

    lo, hi = wilson_interval(44, 50)            # 88 %: the interval is asymmetric, below 100 %
    assert (round(100 * lo, 1), round(100 * hi, 1)) == (76.2, 94.4)
    assert wilson_interval(0, 50)[0] == pytest.approx(0.0, abs=1e-12) and 0.07 < wilson_interval(0, 50)[1] < 0.072
    assert wilson_interval(50, 50)[1] == pytest.approx(1.0)
    with pytest.raises(EvaluationError):
        wilson_interval(3, 0)
