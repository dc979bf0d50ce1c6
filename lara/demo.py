"""``lara-demo``: the README's main command, the whole loop on one machine in simulation.

    lara-demo [--workdir runs/demo] [--task pick_place] [--steps 300] [--duration 30]

It runs the commands a lab runs, in order, each as its own process with its log in the work
directory: a demonstration dataset (LeRobot v3), ``lara-train joint`` (tiny preset), ``lara-export
--onnx``, then the simulated G1 (``lara-sim``), ``lara-serve --engine ort`` and ``lara-robot run
--sim``, and ends with a summary. A step whose output already exists is not run again (delete the
work directory to start over). Everything is stopped on exit, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path


class DemoError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[lara-demo] {msg}", flush=True)


def _run(cmd: list[str], log_path: Path, what: str) -> None:
    """Run a command to completion with its output in ``log_path``; fail with the log's tail."""
    _log(f"{what}: {shlex.join(cmd)}")
    start = time.monotonic()
    with open(log_path, "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log_path.read_text()[-2000:]
        raise DemoError(f"{what} failed (exit {code}); the end of {log_path}:\n{tail}")
    _log(f"{what}: done in {time.monotonic() - start:.0f} s (log: {log_path})")


class _Service:
    """A long-running child process (server, simulator) stopped with SIGINT, then SIGKILL."""

    def __init__(self, cmd: list[str], log_path: Path, what: str):
        self.what, self.log_path = what, log_path
        _log(f"starting {what}: {shlex.join(cmd)}")
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise DemoError(f"{self.what} exited with {self.proc.returncode}; the end of {self.log_path}:\n"
                            f"{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _wait_for_server(address: str, timeout_s: float, service: _Service) -> dict:
    from runtime.client import PolicyClient, ServerTimeout

    deadline = time.monotonic() + timeout_s
    client = PolicyClient(address, timeout_s=2.0)
    try:
        while time.monotonic() < deadline:
            service.check()
            try:
                return client.metadata()
            except ServerTimeout:
                time.sleep(0.5)
    finally:
        client.close()
    raise DemoError(f"lara-serve did not answer on {address} within {timeout_s:.0f} s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lara-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="where everything is written")
    p.add_argument("--task", default="pick_place", choices=["pick_place", "pour"])
    p.add_argument("--dataset", type=Path, help="a LeRobot v3 dataset to train on (default: a synthetic one)")
    p.add_argument("--policy", type=Path, help="a policy bundle to serve (skips dataset and training)")
    p.add_argument("--episodes", type=int, default=8, help="episodes of the synthetic dataset")
    p.add_argument("--steps", type=int, default=300, help="training steps (tiny preset)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of lara-robot run in the sim")
    p.add_argument("--serve-dashboard", default=None, help="lara-serve dashboard HOST:PORT (default: a free port)")
    p.add_argument("--robot-dashboard", default=None, help="lara-robot status page HOST:PORT (default: a free port)")
    args = p.parse_args(argv)

    os.environ.setdefault("MUJOCO_GL", "egl")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    try:
        if args.policy is None:
            dataset = args.dataset or work / "dataset"
            if args.dataset is None and not (dataset / "meta" / "info.json").exists():
                from lara.data.synthetic import write_synthetic_dataset

                _log(f"1/5 demonstrations: writing a synthetic LeRobot v3 dataset of {args.episodes} episodes "
                     f"to {dataset}")
                write_synthetic_dataset(dataset, episodes=args.episodes, frames_per_episode=60, seed=0)
            else:
                _log(f"1/5 demonstrations: {dataset}")
            bundle = work / "policy"
            if not (bundle / "model.safetensors").exists():
                _run([py, "-m", "lara.train.cli", "joint", "--preset", "tiny", "--dataset", str(dataset),
                      "--steps", str(args.steps), "--out", str(bundle), "--no-progress"],
                     work / "train.log", "2/5 training (lara-train joint, tiny preset)")
            else:
                _log(f"2/5 training: {bundle} exists")
        else:
            bundle = args.policy
            _log(f"1-2/5 using the policy bundle {bundle}")
        if not (bundle / "manifest.json").exists():
            _run([py, "-m", "policy_export.cli", str(bundle), "--onnx"], work / "export.log",
                 "3/5 export (lara-export --onnx, parity-checked against torch)")
        else:
            _log(f"3/5 export: {bundle / 'manifest.json'} exists")

        domain = random.randint(100, 230)  # keeps clear of a real robot (0) and of the sim default (1)
        port = _free_port()
        address = f"tcp://127.0.0.1:{port}"
        serve_dash = args.serve_dashboard or f"127.0.0.1:{_free_port()}"
        robot_dash = args.robot_dashboard or f"127.0.0.1:{_free_port()}"
        with ExitStack() as stack:
            sim = _Service([py, "-m", "robot.sim.cli", "--task", args.task, "--domain", str(domain)],
                           work / "sim.log", f"4/5 the simulated G1 (lara-sim, DDS domain {domain})")
            stack.callback(sim.stop)
            server = _Service([py, "-m", "runtime.cli", "--policy", str(bundle), "--engine", "ort",
                               "--bind", address, "--dashboard", serve_dash],
                              work / "serve.log", "4/5 lara-serve --engine ort")
            stack.callback(server.stop)
            meta = _wait_for_server(address, 120.0, server)
            _log(f"lara-serve is up: model {meta.get('model_id')}, horizon {meta.get('action_horizon')}")
            _log(f"dashboards: lara-serve http://{serve_dash}/   lara-robot http://{robot_dash}/")
            sim.check()
            result_path = work / "run.json"
            _run([py, "-m", "robot.cli", "run", "--task", args.task, "--sim", "--sim-running",
                  "--domain", str(domain), "--server", address, "--duration", str(args.duration),
                  "--dashboard", robot_dash, "--json", str(result_path)],
                 work / "robot.log", f"5/5 lara-robot run --task {args.task} --sim for {args.duration:.0f} s")
        result = json.loads(result_path.read_text())
    except DemoError as exc:
        print(f"lara-demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lara-demo: interrupted; everything was stopped", file=sys.stderr)
        return 130

    _log("summary:")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
