"""``python -m lara_g1.apps.loop``: the whole loop in simulation, with numbers (docs/RESULTS.md).

    python -m lara_g1.apps.loop [--workdir runs/loop] [--tasks pick_place pour] [--episodes 50]
                        [--video-episodes 60] [--lam-steps 2000] [--steps 10000] [--trials 50]
                        [--paraphrase-trials 10] [--preset tiny] [--seed 0]
                        [--variants full dit frozen] [--results docs/RESULTS.md]

Every step is the command a lab runs, as its own process with its log in the work directory:

1. demonstrations: ``lara-teleop record --source expert --robot sim --discard-failed`` per task,
   all into one LeRobot v3 dataset (the episodes' instructions tell the tasks apart: one policy
   learns both); the session reports (``demos_TASK_K.json``) hold the scripted expert's
   per-stage success on every attempt, and a session that the safety filter stops is followed by
   one that resumes the dataset;
2. action-free video: ``lara-teleop record --source explore`` per task (random reaches around
   the task's objects, its own dataset, never trained on as actions);
3. LAM stage 1: ``lara-train lam`` on the demonstrations' frames and the video (reconstruction
   only); its latent report is ``lam/train_summary.json``;
4. ``lara-train joint`` per variant with the same preset, seed and steps: LARA full (alignment,
   starting from the stage-1 LAM), LARA DiT-only (``--no-align``), frozen LAM (``--freeze-lam``:
   the stage-1 LAM as a fixed target, the paper's Fig. 6 ablation);
5. ``lara-export --onnx`` of each (parity-checked against torch);
6. per policy: ``lara-serve --engine ort``, then ``lara-robot eval --sim --trials N`` per task
   with the task's instruction (each trial a new scene seed, the simulator's stage detectors score
   it), and ``--paraphrase-trials`` more per paraphrase of the instruction (configs/control/tasks.yaml);
7. the table in the paper's layout (Pick, Place, Full; Grasp-Left, Grasp-Right, Pour, Full)
   with 95 % intervals on Full, and the paraphrase table, written to ``WORKDIR/RESULTS.md``
   (and ``--results``).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lara_g1.core.errors import LaraError

TASKS = ("pick_place", "pour")
# Policy variants: name -> (table label, extra lara-train joint arguments, uses the stage-1 LAM).
VARIANTS = {"full": ("LARA full", [], True), "dit": ("LARA DiT-only", ["--no-align"], False),
            "frozen": ("LARA frozen LAM", ["--freeze-lam"], True)}
# First scene seed of each task's action-free video: clear of the demonstrations' and evaluations'.
VIDEO_SEEDS = {"pick_place": 200, "pour": 300}
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


def record_video(video: Path, task: str, episodes: int, work: Path, *, seed: int) -> dict:
    """``episodes`` action-free episodes of random reaches in ``task``'s scene (``lara-teleop record
    --source explore``) into ``video``; resumes a dataset that holds some already."""
    from lara_g1.lara.data.lerobot import LeRobotDataset
    from lara_g1.teleop.sources.expert import explore_instruction

    report = work / f"video_{task}.json"
    if report.exists():
        return json.loads(report.read_text())
    resume = (video / "meta" / "info.json").exists()
    have = sum(explore_instruction(task) in e.tasks for e in LeRobotDataset(video).episodes) if resume else 0
    if have >= episodes:    # an earlier session saved them all and stopped before its report
        return {"task": task, "episodes_saved": have}
    cmd = [sys.executable, "-m", "lara_g1.teleop.cli", "record", "--source", "explore", "--robot", "sim",
           "--task", task, "--episodes", str(episodes - have), "--out", str(video), "--domain", str(sim_domain()),
           "--seed", str(seed), "--reset-time", "1", "--report", str(report)] + (["--resume"] if resume else [])
    run_step(cmd, work / f"video_{task}.log", f"action-free video: {episodes} random-reach episodes in the "
             f"{task} scene ({have} episodes in the video dataset before)")
    return json.loads(report.read_text())


def train_lam(dataset: Path, video: Path | None, out: Path, log_path: Path, *, preset: str, steps: int,
              seed: int) -> None:
    """Stage 1: ``lara-train lam`` on the demonstrations' frames and the action-free video."""
    cmd = [sys.executable, "-m", "lara_g1.lara.train.cli", "lam", "--preset", preset, "--dataset", str(dataset),
           "--steps", str(steps), "--seed", str(seed), "--out", str(out), "--no-progress"]
    if video is not None:
        cmd += ["--video", str(video)]
    if out.exists():
        cmd.append("--resume")
    run_step(cmd, log_path, "LAM stage 1 (lara-train lam, reconstruction only)")


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
             dashboard: str = "off", instruction: str | None = None) -> dict:
    """``lara-robot eval --sim``: returns its metrics.json. Scene seeds start at ``seed`` (the
    demonstrations used seeds from 0, so by default no evaluation scene was demonstrated);
    ``instruction`` replaces the task's (the paraphrase check)."""
    cmd = [sys.executable, "-m", "lara_g1.robot.cli", "eval", "--task", task, "--sim", "--trials", str(trials),
           "--server", address, "--domain", str(sim_domain()), "--seed", str(seed), "--out", str(out),
           "--dashboard", dashboard, "--log-level", "WARNING"]
    if trial_s is not None:
        cmd += ["--trial-s", str(trial_s)]
    if control_config is not None:
        cmd += ["--config", control_config]
    if instruction is not None:
        cmd += ["--instruction", instruction]
    run_step(cmd, log_path, f"evaluation: {trials} trial(s) of {task}"
             + (f" instructed {instruction!r}" if instruction else ""))
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


def _cell(m: dict, col: str) -> str:
    """``88 [76, 94] (n=50)``: the rate with its 95 % Wilson interval where it is a plain
    proportion of trials (a stage), without one for the paper's ratios (Place, Pour)."""
    from lara_g1.robot.evaluation import wilson_interval

    n = m["trials"]
    successes = m.get("successes", {}).get(col)
    if successes is None:
        return f"{_pct(m['metrics'][col])} (n={n})"
    lo, hi = wilson_interval(int(successes), n)
    return f"{_pct(m['metrics'][col])} [{_pct(lo)}, {_pct(hi)}] (n={n})"


@dataclass
class Row:
    label: str
    metrics: dict          # task -> compute_metrics / metrics.json summary
    paraphrases: dict = field(default_factory=dict)     # task -> [(instruction, metrics)]


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
                cells.append("not run" if m is None else _cell(m, col))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paraphrase_table(rows: list[Row], tasks: tuple[str, ...]) -> str:
    """Full success per instruction wording: the task's own, then each paraphrase."""
    from lara_g1.robot.evaluation import load_tasks

    defs = load_tasks()
    lines = ["| Method | Task | Instruction | Full |", "|---|---|---|---|"]
    for row in rows:
        for task in tasks:
            if task not in row.paraphrases or task not in row.metrics:
                continue
            for text, m in [(defs[task].instruction, row.metrics[task]), *row.paraphrases[task]]:
                lines.append(f"| {row.label} | {task} | {text} | {_cell(m, 'Full')} |")
    return "\n".join(lines)


def write_results(path: Path, rows: list[Row], tasks: tuple[str, ...], settings: dict) -> None:
    text = ["# lara-g1 loop results (simulated G1)", "",
            "Success rates in percent over n attempts (expert: every recorded attempt; policies: "
            "`lara-robot eval --sim` trials on unseen scene seeds), scored by the simulator's stage detectors.",
            "Place = Full / Pick; Pour = Full / (Grasp-Left × Grasp-Right); [lo, hi]: 95 % Wilson interval.", "",
            results_table(rows, tasks), ""]
    if any(row.paraphrases for row in rows):
        text += ["Instruction robustness (the paraphrases are in no demonstration):", "",
                 paraphrase_table(rows, tasks), ""]
    text += ["Settings (`python -m lara_g1.apps.loop`):", "", "```", json.dumps(settings, indent=1), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lara-loop", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("runs/loop"), help="where everything is written")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--episodes", type=int, default=50, help="successful demonstrations per task")
    p.add_argument("--video-episodes", type=int, default=60,
                   help="action-free video episodes per task for LAM stage 1 (0: the demonstrations' frames only)")
    p.add_argument("--lam-steps", type=int, default=2000,
                   help="LAM stage-1 steps (0: no stage 1, the joint runs start from a fresh LAM)")
    p.add_argument("--preset", default="tiny", help="lara-train preset (tiny, small)")
    p.add_argument("--steps", type=int, default=10000, help="training steps of each policy")
    p.add_argument("--batch-size", type=int, help="training batch (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="training seed (every policy)")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS),
                   help="full: LARA with alignment; dit: --no-align; frozen: --freeze-lam")
    p.add_argument("--trials", type=int, default=50, help="evaluation trials per task and policy")
    p.add_argument("--paraphrase-trials", type=int, default=10,
                   help="evaluation trials per paraphrase of each task's instruction (0: none)")
    p.add_argument("--trial-s", type=float, help="seconds per evaluation trial (default: the task's)")
    p.add_argument("--control-config",
                   help="lara-robot control/safety config for the evaluation (a configs/control name or YAML path; "
                        "default: default)")
    p.add_argument("--results", type=Path, help="also write the results table here (e.g. docs/RESULTS.md)")
    args = p.parse_args(argv)
    if min(args.episodes, args.steps, args.trials) < 1:
        p.error("--episodes, --steps and --trials must be >= 1")
    if min(args.video_episodes, args.lam_steps, args.paraphrase_trials) < 0:
        p.error("--video-episodes, --lam-steps and --paraphrase-trials must be >= 0")
    if args.lam_steps == 0 and "frozen" in args.variants:
        p.error("the frozen-LAM variant needs stage 1 (--lam-steps > 0)")

    from lara_g1.robot.evaluation import load_tasks

    os.environ.setdefault("MUJOCO_GL", "egl")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tasks = tuple(t for t in TASKS if t in args.tasks)
    task_defs = load_tasks()
    dataset, video, lam = work / "demos", work / "video", work / "lam"
    try:
        rows = [Row("Scripted expert (demonstrations)", {})]
        for task in tasks:
            report = collect_demos(dataset, task, args.episodes, work)
            log(f"demonstrations of {task}: {report['episodes_saved']} saved over {len(report['attempts'])} "
                f"attempt(s) in {report['sessions']} session(s)")
            rows[0].metrics[task] = expert_metrics(report)
        if args.lam_steps:
            if args.video_episodes:
                for task in tasks:      # scene seeds clear of the demonstrations' (0..) and evaluations' (1000..)
                    record_video(video, task, args.video_episodes, work, seed=VIDEO_SEEDS[task])
            if not (lam / "lam" / "model.safetensors").exists():
                train_lam(dataset, video if args.video_episodes else None, lam, work / "train_lam.log",
                          preset=args.preset, steps=args.lam_steps, seed=args.seed)
        for variant in args.variants:
            label, extra, uses_lam = VARIANTS[variant]
            if uses_lam and args.lam_steps:
                extra = [*extra, "--lam", str(lam)]
            bundle = work / f"policy_{variant}"
            if not (bundle / "model.safetensors").exists():
                train_policy(dataset, bundle, work / f"train_{variant}.log", preset=args.preset, steps=args.steps,
                             seed=args.seed, extra=extra, batch_size=args.batch_size)
            if not (bundle / "manifest.json").exists():
                export_onnx(bundle, work / f"export_{variant}.log")
            row = Row(f"{label} ({args.preset}, {args.steps} steps)", {})
            runs = []     # (task, instruction or None, out dir, trials)
            for task in tasks:
                runs.append((task, None, work / "eval" / variant / task, args.trials))
                if args.paraphrase_trials:
                    for k, text in enumerate(task_defs[task].paraphrases):
                        runs.append((task, text, work / "eval" / variant / f"{task}_paraphrase{k + 1}",
                                     args.paraphrase_trials))
            pending = [r for r in runs if not (r[2] / "metrics.json").exists()]
            if pending:
                with serve(bundle, work / f"serve_{variant}.log") as address:
                    for task, text, out, trials in pending:
                        evaluate(address, task, trials, out, work / f"eval_{variant}_{out.name}.log",
                                 trial_s=args.trial_s, control_config=args.control_config, instruction=text)
            for task, text, out, _ in runs:
                metrics = json.loads((out / "metrics.json").read_text())
                if text is None:
                    row.metrics[task] = metrics
                else:
                    row.paraphrases.setdefault(task, []).append((text, metrics))
            rows.append(row)
    except LoopError as exc:
        print(f"lara-loop: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lara-loop: interrupted; finished steps are kept in the work directory", file=sys.stderr)
        return 130

    settings = {"tasks": list(tasks), "episodes_per_task": args.episodes,
                "video_episodes_per_task": args.video_episodes if args.lam_steps else 0,
                "lam_steps": args.lam_steps, "preset": args.preset,
                "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                "variants": args.variants, "trials": args.trials, "paraphrase_trials": args.paraphrase_trials,
                "trial_s": args.trial_s, "control_config": args.control_config or "default",
                "engine": "ort", "command": shlex.join(["python", "-m", "lara_g1.apps.loop", *(argv or sys.argv[1:])])}
    for path in [work / "RESULTS.md"] + ([args.results] if args.results else []):
        write_results(path, rows, tasks, settings)
        log(f"results written to {path}")
    print(results_table(rows, tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
