"""``lara-demo``: the README's main command, the serve-and-run loop on one machine in simulation.

    lara-demo [--workdir runs/demo] [--task pick_place] [--steps 300] [--duration 30]

It runs the commands a lab runs, in order, each as its own process with its log in the work
directory: a small demonstration dataset (LeRobot v3; synthetic unless ``--dataset``), ``lara-train
joint`` (tiny preset), ``lara-export --onnx``, ``lara-serve --engine ort``, then ``lara-robot run
--sim`` (which starts the simulated G1), and ends with the run's summary. A step whose output
already exists is not run again (delete the work directory to start over). Everything is stopped
on exit, Ctrl-C included. The full loop with expert demonstrations and evaluation, and its
numbers, is ``python -m lara.loop`` (docs/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lara.loop import LoopError, export_onnx, free_port, log, run_step, serve, sim_domain, train_policy


def _summary(result: dict) -> str:
    def ms(key: str) -> str:
        return "n/a" if result.get(key) is None else f"{result[key]:.1f}"

    sched = result.get("scheduler", {})
    return "\n".join([
        f"  ended: {result['reason']} after {result['duration_s']:.1f} s, {result['ticks']} commands",
        f"  control period p50 / p99: {ms('period_ms_p50')} / {ms('period_ms_p99')} ms",
        f"  frame -> command latency p50 / p99: {ms('e2e_ms_p50')} / {ms('e2e_ms_p99')} ms",
        f"  inference round trip p50 / p99: {ms('infer_rtt_ms_p50')} / {ms('infer_rtt_ms_p99')} ms",
        f"  chunks: {sched.get('chunks', 0)} used, {sched.get('chunks_dropped', 0)} dropped as stale",
        f"  safety interventions: {result.get('interventions') or 'none'}",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lara-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="where everything is written")
    p.add_argument("--task", default="pick_place", choices=["pick_place", "pour"])
    p.add_argument("--dataset", type=Path, help="a LeRobot v3 dataset to train on (default: a synthetic one)")
    p.add_argument("--policy", type=Path, help="a policy bundle to serve (skips dataset and training)")
    p.add_argument("--episodes", type=int, default=8, help="episodes of the synthetic dataset")
    p.add_argument("--steps", type=int, default=300, help="training steps (tiny preset)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of lara-robot run in the sim")
    args = p.parse_args(argv)

    os.environ.setdefault("MUJOCO_GL", "egl")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    result_path = work / "run.json"
    result_path.unlink(missing_ok=True)
    try:
        bundle = args.policy
        if bundle is None:
            dataset = args.dataset or work / "dataset"
            if args.dataset is None and not (dataset / "meta" / "info.json").exists():
                from lara.data.synthetic import write_synthetic_dataset

                log(f"demonstrations: a synthetic LeRobot v3 dataset of {args.episodes} episodes in {dataset}")
                write_synthetic_dataset(dataset, episodes=args.episodes, frames_per_episode=60, seed=0)
            bundle = work / "policy"
            if not (bundle / "model.safetensors").exists():
                train_policy(dataset, bundle, work / "train.log", preset="tiny", steps=args.steps, seed=0, extra=[])
        if not (bundle / "manifest.json").exists():
            export_onnx(bundle, work / "export.log")
        serve_dash, robot_dash = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        with serve(bundle, work / "serve.log", dashboard=serve_dash) as address:
            log(f"dashboards: lara-serve http://{serve_dash}/   lara-robot http://{robot_dash}/")
            try:
                run_step([sys.executable, "-m", "robot.cli", "run", "--task", args.task, "--sim",
                          "--domain", str(sim_domain()), "--server", address, "--duration", str(args.duration),
                          "--dashboard", robot_dash, "--json", str(result_path)],
                         work / "robot.log", f"lara-robot run --task {args.task} --sim for {args.duration:.0f} s")
            except LoopError:
                if not result_path.exists():
                    raise
                log("the run ended early (see the summary and robot.log)")
    except LoopError as exc:
        print(f"lara-demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lara-demo: interrupted; everything was stopped", file=sys.stderr)
        return 130

    result = json.loads(result_path.read_text())
    log(f"summary of lara-robot run (policy {bundle}):\n{_summary(result)}")
    return 0 if result["reason"] == "end of duration" else 1


if __name__ == "__main__":
    sys.exit(main())
