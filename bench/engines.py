"""Inference engines side by side: torch eager, torch.compile, ONNX Runtime (and TensorRT on a GPU).

    python bench/engines.py --preset tiny [--bundle DIR] [--iters N] [--threads N] [--batches 1 8]

For one preset, in one process: a random bundle of that preset (or ``--bundle``) is exported to
ONNX, every engine is loaded, and the engines are timed round-robin on the same observations and
noise (each iteration runs every engine once, so load from other processes hits them alike).
Per engine and batch size it prints the median and p99 in ms of the backbone, the action head
(the 4-step Euler loop), the chunk (backbone + action head) and the end-to-end ``infer`` (with the
shared pre/post-processing), and each engine's ratio to torch eager (> 1 = faster).
Only ratios measured in the same run are comparable.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAGES = ("backbone", "action_head", "chunk", "total")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def gpu_name() -> str | None:
    try:
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        return None


def load_engines(bundle: Path, threads: int, want_compile: bool, want_trt: bool, precision: str, log):
    from lara_g1.runtime.engines import load_engine

    engines = {"torch": load_engine(bundle, "torch", seed=0)}
    if want_compile:
        engines["torch.compile"] = load_engine(bundle, "torch", compile=True, seed=0)
    engines["ort"] = load_engine(bundle, "ort", threads=threads, seed=0)
    if want_trt:
        engines[f"trt-{precision}"] = load_engine(bundle, "trt", precision=precision, seed=0)
    for name, e in engines.items():
        log(f"loaded {name}: {e.metadata.get('provider') or e.metadata.get('device') or ''}")
    return engines


def observations(batch: int, camera: str, seed: int):
    from lara_g1.core.observation import Observation

    rng = np.random.default_rng(seed)
    return [Observation({camera: rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)},
                        rng.uniform(-0.5, 0.5, 28).astype(np.float32), "pick up the red cube")
            for _ in range(batch)]


def measure(engines: dict, batch: int, iters: int, warmup: int, log) -> dict[str, dict[str, np.ndarray]]:
    from lara_g1.core.observation import make_noise

    first = next(iter(engines.values()))
    camera = first.spec.config.cameras[0]
    obs, noise = observations(batch, camera, seed=batch), make_noise(batch, first.spec.horizon, first.spec.max_action_dim, 0)
    for name, e in engines.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            e.infer(obs, noise)
        log(f"batch {batch}: warm-up of {name} took {time.perf_counter() - t0:.1f} s")
    samples = {name: {s: [] for s in STAGES} for name in engines}
    for _ in range(iters):
        for name, e in engines.items():
            t = e.infer(obs, noise).timing_ms
            for s in ("backbone", "action_head", "total"):
                samples[name][s].append(t[s])
            samples[name]["chunk"].append(t["backbone"] + t["action_head"])
    return {n: {s: np.asarray(v) for s, v in d.items()} for n, d in samples.items()}


def table(results: dict[int, dict[str, dict[str, np.ndarray]]]) -> str:
    head = f"| batch | engine | {' | '.join(f'{s} median / p99 ms (x eager)' for s in STAGES)} |"
    rows = [head, "|" + "---|" * (2 + len(STAGES))]
    for batch, per_engine in results.items():
        base = per_engine["torch"]
        for name, stages in per_engine.items():
            cells = []
            for s in STAGES:
                med, p99 = np.median(stages[s]), np.percentile(stages[s], 99)
                ratio = np.median(base[s]) / med if med > 0 else float("nan")
                cells.append(f"{med:.2f} / {p99:.2f} ({ratio:.2f}x)")
            rows.append(f"| {batch} | {name} | {' | '.join(cells)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper"))
    p.add_argument("--bundle", type=Path,
                   help="an existing bundle, exported into when it has no ONNX export (default: a random one of --preset)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=None, help="timed iterations per engine (default: by preset)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for torch and ORT")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile on CPU)")
    p.add_argument("--precision", default="fp16", choices=("fp16", "bf16", "fp32"), help="TensorRT precision")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    log = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    iters = args.iters or {"tiny": 40, "small": 15, "paper": 20}[args.preset]
    gpu = gpu_name()
    want_trt = gpu is not None
    if want_trt:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            log("a GPU is present but tensorrt is not installed: no TensorRT row (pip install 'lara-g1[trt]')")
            want_trt = False
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lara-bench-") as tmp:
        bundle = args.bundle
        if bundle is None:
            from lara_g1.lara.bundle import create_random_bundle
            bundle = create_random_bundle(Path(tmp) / args.preset, preset=args.preset, seed=0)
        from lara_g1.lara.manifest import Manifest, ManifestError
        from lara_g1.policy_export.onnx_export import export_onnx
        try:   # an --bundle that is already exported is benchmarked as it is
            manifest = Manifest.load(bundle)
            for precision in ("fp32", args.precision) if want_trt else ("fp32",):
                manifest.get("action_head", "onnx", precision)
            exported = args.bundle is not None
        except ManifestError:
            exported = False
        if not exported:
            export_onnx(bundle, precisions=("fp32", args.precision) if want_trt else ("fp32",), log=log)
        if want_trt:
            from lara_g1.policy_export.trt_build import build_trt
            build_trt(bundle, args.precision, max_batch=max(args.batches), log=log)
        engines = load_engines(bundle, args.threads, not args.no_compile, want_trt, args.precision, log)
        results = {b: measure(engines, b, iters, args.warmup, log) for b in args.batches}
        for e in engines.values():
            e.close()
    import onnxruntime

    hw = f"GPU {gpu}" if gpu else f"CPU {cpu_model()} ({os.cpu_count()} cores), threads={args.threads}"
    print(f"## {args.preset}: {hw}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"{iters} round-robin iterations after {args.warmup} warm-up calls per engine and batch; "
          f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
