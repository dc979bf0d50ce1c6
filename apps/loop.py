"""``python -m lara_g1.apps.loop``: the whole loop in simulation, with numbers (docs/RESULTS.md).

    python -m lara_g1.apps.loop [--workdir runs/loop] [--tasks pick_place pour] [--episodes 50]
                        [--steps 10000] [--trials 50] [--preset tiny] [--seed 0]
                        [--variants full dit] [--results docs/RESULTS.md]

Every step is the command a lab runs, as its own process with its log in the work directory:

1. demonstrations: ``lara-teleop record --source expert --robot sim --discard-failed`` per task,
   all into one LeRobot v3 dataset (the episodes' instructions tell the tasks apart); the session
   reports (``demos_TASK_K.json``) hold the scripted expert's per-stage success on every attempt,
   and a session that the safety filter stops is followed by one that resumes the dataset;
2. ``lara-train joint`` twice with the same preset, seed and steps: LARA full (latent-action
   alignment) and ``--no-align`` (LARA DiT-only);
3. ``lara-export --onnx`` of both (parity-checked against torch);
4. per policy: ``lara-serve --engine ort``, then ``lara-robot eval --sim --trials N`` per task
   (each trial a new scene seed, the simulator's stage detectors score it);
5. the table in the paper's layout (Pick, Place, Full; Grasp-Left, Grasp-Right, Pour, Full)
   for the expert and both policies, written to ``WORKDIR/RESULTS.md`` (and ``--results``).

A step whose output already exists is not run again, so an interrupted loop resumes where it
stopped (delete the work directory, or a part of it, to redo steps).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lara_g1.core.errors import LaraError

TASKS = ("pick_place", "pour")
# Policy variants: name -> (table label, extra lara-train joint arguments).
VARIANTS = {"full": ("LARA full", []), "dit": ("LARA DiT-only", ["--no-align"])}
# The paper's columns per task (robot.evaluation.METRICS computes them).
COLUMNS = {"pick_place": ("Pick", "Place", "Full"), "pour": ("Grasp-Left", "Grasp-Right", "Pour", "Full")}


class LoopError(LaraError, RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[lara] {msg}", flush=True)


def run_step(cmd: list[str], log_path: Path, what: str, timeout_s: float | None = None) -> None:
    """Run ``cmd`` to completion with its output in ``log_path``; fail with the log's tail."""
    log(f"{what}: {shlex.join(cmd)}")
    start = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout_s)
        except BaseException:          # timeout or Ctrl-C: the child fades out on SIGINT
            _stop(proc)
            raise
    if code != 0:
        raise LoopError(f"{what} failed (exit {code}); the end of {log_path}:\n{log_path.read_text()[-3000:]}")
    log(f"{what}: done in {time.monotonic() - start:.0f} s (log: {log_path})")


def _stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sim_domain() -> int:
    """A DDS domain of its own: clear of a real robot (0) and the sim default (1)."""
    return random.randint(100, 230)


# ----------------------------------------------------------------------------- the steps
def record_demos(dataset: Path, task: str, episodes: int, report: Path, log_path: Path, *,
                 seed: int = 0, domain: int | None = None, resume: bool = False) -> dict:
    """One ``lara-teleop record --source expert`` session of ``task`` into ``dataset`` (scene seeds
    from ``seed``); returns its report, also when the session stopped early (its ``error``)."""
    cmd = [sys.executable, "-m", "lara_g1.teleop.cli", "record", "--source", "expert", "--robot", "sim",
           "--task", task, "--episodes", str(episodes), "--out", str(dataset),
           "--domain", str(domain or sim_domain()), "--seed", str(seed), "--reset-time", "1",
           "--discard-failed", "--report", str(report)]
    if resume:
        cmd.append("--resume")
    try:
        run_step(cmd, log_path, f"demonstrations: {episodes} scripted-expert episodes of {task}")
    except LoopError:
        if not report.exists():
            raise
        log(f"the session stopped early: {json.loads(report.read_text()).get('error')}")
    return json.loads(report.read_text())


def collect_demos(dataset: Path, task: str, episodes: int, work: Path, max_sessions: int = 10) -> dict:
    """``episodes`` successful expert demonstrations of ``task``, over as many recording sessions as
    it takes: a session that the safety filter stops (e.g. the simulator starved of CPU, its state
    stale) keeps what it saved, and the next one resumes the dataset on new scene seeds. Session
    reports are ``work/demos_TASK_K.json``; returns them merged (seeds and attempts in order)."""
    from lara_g1.teleop.session import SessionOutcome

    reports = []
    while True:
        done = sorted(work.glob(f"demos_{task}_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        reports = [json.loads(p.read_text()) for p in done]
        saved = sum(r["episodes_saved"] for r in reports)
        # A session that met as many failures as episodes it was asked for ends the collection.
        if saved >= episodes or reports and reports[-1].get("outcome") == SessionOutcome.TOO_MANY_FAILED:
            break
        if len(reports) >= max_sessions:
            raise LoopError(f"{task}: {saved} of {episodes} demonstrations after {max_sessions} recording sessions; "
                            f"see {work}/demos_{task}_*.log")
        k = len(reports)
        record_demos(dataset, task, episodes - saved, work / f"demos_{task}_{k}.json", work / f"demos_{task}_{k}.log",
                     seed=sum(len(r["scene_seeds"]) for r in reports),
                     resume=(dataset / "meta" / "info.json").exists())
    merged = {"task": task, "sessions": len(reports), "episodes_saved": saved,
              "failed_discarded": sum(r["failed_discarded"] for r in reports),
              "scene_seeds": [s for r in reports for s in r["scene_seeds"]],
              "attempts": [a for r in reports for a in r["attempts"]],
              "errors": [r["error"] for r in reports if r.get("error")]}
    if saved < episodes:
        raise LoopError(f"the expert saved only {saved} of {episodes} {task} episodes "
                        f"({merged['failed_discarded']} failed); see {work}/demos_{task}_*.json")
    return merged


def train_policy(dataset: Path, out: Path, log_path: Path, *, preset: str, steps: int, seed: int,
                 extra: list[str], batch_size: int | None = None) -> None:
    cmd = [sys.executable, "-m", "lara_g1.lara.train.cli", "joint", "--preset", preset, "--dataset", str(dataset),
           "--steps", str(steps), "--seed", str(seed), "--out", str(out), "--no-progress", *extra]
    if out.exists():          # an interrupted run continues from its newest checkpoint
        cmd.append("--resume")
    if batch_size is not None:
        cmd += ["--batch-size", str(batch_size)]
    run_step(cmd, log_path, f"training {out.name} (lara-train joint{''.join(' ' + a for a in extra)})")


def export_onnx(bundle: Path, log_path: Path) -> None:
    run_step([sys.executable, "-m", "lara_g1.policy_export.cli", str(bundle), "--onnx", "--seed", "0"], log_path,
             f"export {bundle.name} (lara-export --onnx)")


@contextlib.contextmanager
def serve(bundle: Path, log_path: Path, *, startup_timeout_s: float = 180.0, threads: int = 1,
          dashboard: str = "off") -> Iterator[str]:
    """``lara-serve --engine ort`` on a free loopback port; yields its address once it answers.

    ``threads``: ONNX Runtime's intra-op threads. The simulator and the robot loop share this
    machine's cores with the server; one thread keeps the engine from fighting them for both
    cores (and its latency steady, which the robot's command watchdog depends on)."""
    from lara_g1.runtime.client import PolicyClient, ServerTimeout

    address = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "lara_g1.runtime.cli", "--policy", str(bundle), "--engine", "ort", "--bind", address,
           "--dashboard", dashboard, "--threads", str(threads)]
    log(f"serving {bundle.name}: {shlex.join(cmd)}")
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            client = PolicyClient(address, timeout_s=2.0)
            try:
                deadline = time.monotonic() + startup_timeout_s
                while True:
                    if proc.poll() is not None:
                        raise LoopError(f"lara-serve exited with {proc.returncode}; the end of {log_path}:\n"
                                        f"{log_path.read_text()[-3000:]}")
                    try:
                        client.metadata()
                        break
                    except ServerTimeout:
                        if time.monotonic() > deadline:
                            raise LoopError(f"lara-serve did not answer on {address} within "
                                            f"{startup_timeout_s:.0f} s") from None
            finally:
                client.close()
            yield address
        finally:
            _stop(proc)


def evaluate(address: str, task: str, trials: int, out: Path, log_path: Path, *,
             trial_s: float | None = None, seed: int = 1000, control_config: str | None = None,
             dashboard: str = "off") -> dict:
    """``lara-robot eval --sim``: returns its metrics.json. Scene seeds start at ``seed`` (the
    demonstrations used seeds from 0, so by default no evaluation scene was demonstrated)."""
    cmd = [sys.executable, "-m", "lara_g1.robot.cli", "eval", "--task", task, "--sim", "--trials", str(trials),
           "--server", address, "--domain", str(sim_domain()), "--seed", str(seed), "--out", str(out),
           "--dashboard", dashboard, "--log-level", "WARNING"]
    if trial_s is not None:
        cmd += ["--trial-s", str(trial_s)]
    if control_config is not None:
        cmd += ["--config", control_config]
    run_step(cmd, log_path, f"evaluation: {trials} trial(s) of {task}")
    return json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------- the table
def expert_metrics(report: dict) -> dict:
    """The expert's per-stage success over every recorded attempt, in ``lara-robot eval``'s format
    (scored like a sim trial: a full success counts every stage)."""
    from lara_g1.robot.evaluation import compute_metrics, load_tasks

    task = load_tasks()[report["task"]]
    trials = []
    for attempt in report["attempts"]:
        stages = dict(attempt["stages"])
        if stages.get("Full"):
            stages = dict.fromkeys(stages, True)
        trials.append(stages)
    return compute_metrics(task, trials)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}"


@dataclass
class Row:
    label: str
    metrics: dict          # task -> compute_metrics / metrics.json summary


def results_table(rows: list[Row], tasks: tuple[str, ...]) -> str:
    """Markdown in the paper's layout, success in percent, trials per cell's task in the header."""
    head = ["Method"]
    for task in tasks:
        head += [f"{task}: {c}" for c in COLUMNS[task]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.label]
        for task in tasks:
            m = row.metrics.get(task)
            for col in COLUMNS[task]:
                cells.append("not run" if m is None else f"{_pct(m['metrics'][col])} (n={m['trials']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(path: Path, rows: list[Row], tasks: tuple[str, ...], settings: dict) -> None:
    text = ["# lara-g1 loop results (simulated G1)", "",
            "Success rates in percent over n attempts (expert: every recorded attempt; policies: "
            "`lara-robot eval --sim` trials on unseen scene seeds), scored by the simulator's stage detectors.",
            "Place = Full / Pick; Pour = Full / (Grasp-Left × Grasp-Right).", "",
            results_table(rows, tasks), "", "Settings (`python -m lara_g1.apps.loop`):", "",
            "```", json.dumps(settings, indent=1), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lara-loop", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("runs/loop"), help="where everything is written")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--episodes", type=int, default=50, help="successful demonstrations per task")
    p.add_argument("--preset", default="tiny", help="lara-train preset (tiny, small)")
    p.add_argument("--steps", type=int, default=10000, help="training steps of each policy")
    p.add_argument("--batch-size", type=int, help="training batch (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="training seed (both policies)")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS),
                   help="full: LARA with alignment; dit: --no-align")
    p.add_argument("--trials", type=int, default=50, help="evaluation trials per task and policy")
    p.add_argument("--trial-s", type=float, help="seconds per evaluation trial (default: the task's)")
    p.add_argument("--control-config",
                   help="lara-robot control/safety config for the evaluation (a configs/control name or YAML path; "
                        "default: default)")
    p.add_argument("--results", type=Path, help="also write the results table here (e.g. docs/RESULTS.md)")
    args = p.parse_args(argv)
    if min(args.episodes, args.steps, args.trials) < 1:
        p.error("--episodes, --steps and --trials must be >= 1")

    os.environ.setdefault("MUJOCO_GL", "egl")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tasks = tuple(t for t in TASKS if t in args.tasks)
    dataset = work / "demos"
    try:
        rows = [Row("Scripted expert (demonstrations)", {})]
        for task in tasks:
            report = collect_demos(dataset, task, args.episodes, work)
            log(f"demonstrations of {task}: {report['episodes_saved']} saved over {len(report['attempts'])} "
                f"attempt(s) in {report['sessions']} session(s)")
            rows[0].metrics[task] = expert_metrics(report)
        for variant in args.variants:
            label, extra = VARIANTS[variant]
            bundle = work / f"policy_{variant}"
            if not (bundle / "model.safetensors").exists():
                train_policy(dataset, bundle, work / f"train_{variant}.log", preset=args.preset, steps=args.steps,
                             seed=args.seed, extra=extra, batch_size=args.batch_size)
            if not (bundle / "manifest.json").exists():
                export_onnx(bundle, work / f"export_{variant}.log")
            row = Row(f"{label} ({args.preset}, {args.steps} steps)", {})
            pending = [t for t in tasks if not (work / "eval" / variant / t / "metrics.json").exists()]
            if pending:
                with serve(bundle, work / f"serve_{variant}.log") as address:
                    for task in pending:
                        evaluate(address, task, args.trials, work / "eval" / variant / task,
                                 work / f"eval_{variant}_{task}.log", trial_s=args.trial_s,
                                 control_config=args.control_config)
            for task in tasks:
                row.metrics[task] = json.loads((work / "eval" / variant / task / "metrics.json").read_text())
            rows.append(row)
    except LoopError as exc:
        print(f"lara-loop: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lara-loop: interrupted; finished steps are kept in the work directory", file=sys.stderr)
        return 130

    settings = {"tasks": list(tasks), "episodes_per_task": args.episodes, "preset": args.preset,
                "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                "variants": args.variants, "trials": args.trials, "trial_s": args.trial_s,
                "control_config": args.control_config or "default",
                "engine": "ort", "command": shlex.join(["python", "-m", "lara_g1.apps.loop", *(argv or sys.argv[1:])])}
    for path in [work / "RESULTS.md"] + ([args.results] if args.results else []):
        write_results(path, rows, tasks, settings)
        log(f"results written to {path}")
    print(results_table(rows, tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
