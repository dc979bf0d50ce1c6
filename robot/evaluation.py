"""Evaluation over N trials with the paper's G1-Real metrics (docs/CONTROL.md, "Evaluation").

Each trial records a success flag per stage (in sim from ``SimControl.status()``, on the robot
from the operator). From the trials:

- pick-and-place: Pick, Full, Place = Full / Pick;
- pour: Grasp-Left, Grasp-Right, Full, Pour = Full / (Grasp-Left × Grasp-Right).

Rates are fractions of trials; a conditional metric with a zero denominator is ``None``
(undefined, printed as "-"). Results go to ``metrics.json``, ``trials.csv`` and ``metrics.csv``.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Sequence

from pydantic import Field, model_validator

from lara_g1.core.config import ConfigModel, config_dataclass, config_path, load_config
from lara_g1.core.errors import ConfigError, LaraError

FULL = "Full"  # the last stage of every task: full success


class EvaluationError(LaraError, ValueError):
    """A task or a trial record that does not fit the protocol."""


class TaskConfigError(EvaluationError, ConfigError):
    """A task in ``configs/control/tasks.yaml`` that does not fit the protocol."""


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    stages: tuple[str, ...]
    trial_s: float
    paraphrases: tuple[str, ...] = ()   # other wordings of the instruction (robustness evaluation)


@config_dataclass
class _TaskSettings(ConfigModel):
    """One task of ``configs/control/tasks.yaml`` (the key is its name)."""

    instruction: str
    stages: tuple[str, ...]
    trial_s: float = Field(gt=0.0)
    paraphrases: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _stages_end_with_full(self) -> _TaskSettings:
        if not self.stages or self.stages[-1] != FULL or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be distinct and end with {FULL!r}, got {list(self.stages)}")
        if self.instruction in self.paraphrases or len(set(self.paraphrases)) != len(self.paraphrases):
            raise ValueError("paraphrases must be distinct and differ from the instruction")
        return self


_TaskFile = Annotated[dict[str, _TaskSettings], Field(min_length=1)]   # task name -> settings


def load_tasks(path: str | Path | None = None) -> dict[str, Task]:
    """The tasks of ``configs/control/tasks.yaml`` (or of the file at ``path``), validated."""
    tasks = load_config(_TaskFile, path or config_path("control/tasks.yaml"), kind="task list",
                        error=TaskConfigError)
    return {name: Task(name, t.instruction, t.stages, t.trial_s, t.paraphrases) for name, t in tasks.items()}


def _rate(trials: Sequence[Mapping[str, bool]], stage: str) -> float:
    return sum(bool(t[stage]) for t in trials) / len(trials)


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


# The paper's metrics per task: name -> function of the per-stage success rates.
METRICS: dict[str, Callable[[Mapping[str, float]], dict[str, float | None]]] = {
    "pick_place": lambda r: {"Pick": r["Pick"], "Full": r["Full"], "Place": _ratio(r["Full"], r["Pick"])},
    "pour": lambda r: {"Grasp-Left": r["Grasp-Left"], "Grasp-Right": r["Grasp-Right"], "Full": r["Full"],
                       "Pour": _ratio(r["Full"], r["Grasp-Left"] * r["Grasp-Right"])},
}


def normalise_trial(task: Task, stages: Mapping[str, Any]) -> dict[str, bool]:
    """The trial's flags for exactly the task's stages; full success needs every earlier stage."""
    missing = [s for s in task.stages if s not in stages]
    if missing:
        raise EvaluationError(f"trial of {task.name!r} lacks stages {missing} (got {sorted(stages)})")
    flags = {s: bool(stages[s]) for s in task.stages}
    if flags[FULL] and not all(flags[s] for s in task.stages[:-1]):
        raise EvaluationError(f"trial of {task.name!r} marks full success without every earlier stage: {flags}")
    return flags


def ask_stages(task: Task, ask: Callable[[str], bool]) -> dict[str, bool]:
    """The operator's per-stage answers, in order; Full is not asked when an earlier stage failed."""
    stages: dict[str, bool] = {}
    for name in task.stages:
        if name == FULL and not all(stages.values()):
            stages[name] = False
        else:
            stages[name] = bool(ask(f"  stage {name!r} succeeded?"))
    return stages


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson score interval of a success rate (sound at 0 % and 100 %, unlike p ± z·se)."""
    if n < 1 or not 0 <= successes <= n:
        raise EvaluationError(f"no interval for {successes} successes in {n} trials")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def compute_metrics(task: Task, trials: Sequence[Mapping[str, bool]]) -> dict[str, Any]:
    """Per-stage rates and the paper's metrics for ``trials`` (each {stage: success})."""
    if task.name not in METRICS:
        raise EvaluationError(f"no metrics defined for task {task.name!r}; known: {sorted(METRICS)}")
    if not trials:
        raise EvaluationError("no trials to evaluate")
    flags = [normalise_trial(task, t) for t in trials]
    rates = {s: _rate(flags, s) for s in task.stages}
    return {
        "task": task.name,
        "trials": len(flags),
        "successes": {s: sum(f[s] for f in flags) for s in task.stages},
        "rates": rates,
        "metrics": METRICS[task.name](rates),
    }


@dataclass
class TrialRecord:
    index: int
    stages: dict[str, bool]
    end_reason: str = ""
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def write_results(out_dir: Path, task: Task, records: Sequence[TrialRecord], info: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Write metrics.json, trials.csv and metrics.csv into ``out_dir``; return the summary."""
    summary = compute_metrics(task, [r.stages for r in records])
    summary["per_trial"] = [{"trial": r.index, **r.stages, "end_reason": r.end_reason,
                             "duration_s": round(r.duration_s, 3), **r.extra} for r in records]
    if info:
        summary["info"] = dict(info)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    with open(out_dir / "trials.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", *task.stages, "end_reason", "duration_s"])
        for r in records:
            w.writerow([r.index, *(int(r.stages[s]) for s in task.stages), r.end_reason, f"{r.duration_s:.3f}"])
    with open(out_dir / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["metric", "value"])
        for name, value in summary["metrics"].items():
            w.writerow([name, "" if value is None else f"{value:.4f}"])
    return summary


def _json_default(obj: Any) -> Any:
    """numpy values as their Python equivalents; anything else as its text."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def format_table(summary: Mapping[str, Any]) -> str:
    """A plain-text summary table of the stages and metrics."""
    n = summary["trials"]
    lines = [f"task {summary['task']}: {n} trials", f"{'stage':<14}{'success':>10}{'rate':>8}"]
    for stage, count in summary["successes"].items():
        lines.append(f"{stage:<14}{f'{count}/{n}':>10}{summary['rates'][stage]:>8.2f}")
    lines.append(f"{'metric':<14}{'value':>18}")
    for name, value in summary["metrics"].items():
        lines.append(f"{name:<14}{('-' if value is None else f'{value:.2f}'):>18}")
    return "\n".join(lines)
