"""``lara-demo``: the README's main command, the serve-and-run half of the loop on the simulated G1.

    lara-demo [--workdir runs/demo] [--task pick_place|pour] [--trials 3] [--policy BUNDLE]

It runs the commands a lab runs, each as its own process with its log in the work directory:
``lara-serve --engine ort`` on the policy that ships with lara-g1 for the task (``lara.policies``,
trained by ``lara-loop`` on scripted-expert demonstrations of it; ``--policy`` serves another
bundle, exporting it first when it has not been), then ``lara-robot eval --sim`` (which starts
the simulated G1 on DDS over loopback) on scenes no demonstration used. It prints where both
dashboards are, then a success summary in the paper's metrics and what the control loop
measured. Everything is stopped on exit, Ctrl-C included. The whole loop (demonstrations,
training, export, evaluation) is ``lara-loop`` (docs/RESULTS.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from lara_g1.apps.loop import LoopError, evaluate, export_onnx, free_port, log, serve

DEMO_SEED = 5000   # scene seeds of the demo's trials: the loop's demonstrations use 0.., its evaluation 1000..


def _median(trials: list[dict], key: str) -> str:
    values = [t[key] for t in trials if t.get(key) is not None]
    return "n/a" if not values else f"{statistics.median(values):.1f}"


def summary(metrics: dict) -> str:
    """The success table and the control loop's numbers (medians over trials) of an eval's metrics.json."""
    n, trials = metrics["trials"], metrics.get("per_trial", [])
    lines = [f"  {metrics['task']}, {n} trial(s) on unseen scenes:"]
    for stage, count in metrics["successes"].items():
        lines.append(f"    {stage:<12} {count}/{n}")
    for name, value in metrics["metrics"].items():
        if name not in metrics["successes"]:
            lines.append(f"    {name:<12} {'-' if value is None else f'{100 * value:.0f} %'} (paper metric)")
    interventions: dict[str, int] = {}
    for t in trials:
        for k, v in (t.get("interventions") or {}).items():
            interventions[k] = interventions.get(k, 0) + v
    lines += [
        f"  control period p50 / p99: {_median(trials, 'period_ms_p50')} / {_median(trials, 'period_ms_p99')} ms",
        f"  frame -> command latency p50 / p99: {_median(trials, 'e2e_ms_p50')} / {_median(trials, 'e2e_ms_p99')} ms",
        f"  inference round trip p50 / p99: {_median(trials, 'infer_rtt_ms_p50')} / "
        f"{_median(trials, 'infer_rtt_ms_p99')} ms",
        f"  chunks: {sum(t.get('chunks', 0) for t in trials)} used, "
        f"{sum(t.get('chunks_dropped', 0) for t in trials)} dropped as stale",
        f"  safety interventions: {interventions or 'none'}",
        "  (medians over trials)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lara-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="where logs and results are written")
    p.add_argument("--task", default="pick_place", choices=["pick_place", "pour"])
    p.add_argument("--trials", type=int, default=3, help="evaluation trials, each a new scene (default 3)")
    p.add_argument("--policy", type=Path, help="a policy bundle to serve (default: the bundled policy of --task)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"first scene seed (default {DEMO_SEED})")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error("--trials must be >= 1")

    os.environ.setdefault("MUJOCO_GL", "egl")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    out = work / "eval"
    (out / "metrics.json").unlink(missing_ok=True)
    try:
        if args.policy is None:
            from lara_g1.lara.policies import policy_for_task

            bundle = policy_for_task(args.task)
        else:
            bundle = args.policy
            if not (bundle / "manifest.json").exists():
                export_onnx(bundle, work / "export.log")
        log(f"policy: {bundle}")
        serve_dash, robot_dash = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        with serve(bundle, work / "serve.log", dashboard=serve_dash) as address:
            log(f"dashboards: lara-serve http://{serve_dash}/   lara-robot http://{robot_dash}/")
            metrics = evaluate(address, args.task, args.trials, out, work / "robot.log", seed=args.seed,
                               dashboard=robot_dash)
    except (LoopError, FileNotFoundError) as exc:
        print(f"lara-demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lara-demo: interrupted; everything was stopped", file=sys.stderr)
        return 130

    log(f"summary (results in {out}/metrics.json):\n{summary(metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
