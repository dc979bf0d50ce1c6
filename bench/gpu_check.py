"""Parity and latency of the torch, ONNX Runtime and TensorRT engines per preset, written into docs/BENCHMARKS.md.

    python bench/gpu_check.py --device cuda --engines torch,ort,trt --presets tiny,small,paper,gr00t_n16 --batch 1,8 \\
        --out DIR --docs docs/BENCHMARKS.md          # on an NVIDIA GPU (bench/gpu_check.sh runs this)
    python bench/gpu_check.py --device cpu --engines torch,ort --presets tiny --out DIR --docs FILE

For each preset: a random-weight bundle (seed 0) in ``DIR/{preset}``, exported to ONNX (fp32, plus
``--precision`` for TensorRT) by ``lara-export``'s own code, TensorRT engines built on this GPU
(``build_trt``, which also runs its parity gate), then every engine loaded through
``lara_g1.runtime.engines.load_engine``:

- parity: on the same preprocessed observations and noise, the padded normalised actions of every
  engine against the torch engine on ``--device`` (max abs error; tolerance ONNX fp32 1e-4 on CPU,
  1e-3 against torch on CUDA, TensorRT per precision as in ``trt_build.TRT_TOLERANCE``);
- latency: ``bench/engines.py``'s round-robin measurement (same 480x640 frames and noise for every
  engine): medians of the backbone, the action head (the 4-step Euler loop), the chunk (both) and
  ``Engine.infer`` end to end (``total``, with the shared pre/post-processing), per batch size.

CUDA graphs: the TensorRT session replays the action head from a CUDA graph (policy_export/trt_session.py);
the ``off`` rows run the same session with the head enqueued directly on every call. torch and ORT
have no CUDA-graph mode in the runtime (``n/a``).

``paper`` without ``--paper-backbone DIR`` is the paper preset's full-size action head (16 blocks, width
1536, cross-attention 2048, the 4-layer adapter) behind a STAND-IN backbone (patch embedding + token
embedding, 320 VL tokens of 2048): its backbone column is not an Eagle backbone. With ``--paper-backbone``
(an Eagle-2-class transformers checkpoint with its tokenizer) the backbone is that checkpoint's.

``--docs FILE`` gets one block per preset and device, between the HTML comments
``gpu_check:{device}:{preset} begin`` and ``end``: a later run of the same preset replaces its block
(so presets can be run one at a time), and the rest of the file is left as it is.

Without a GPU, ``--device cuda`` (the default) says so and exits 3; ``--device cpu`` runs the same code
on the CPU (engines torch and ort). Exit codes: 0 all checks passed, 1 a parity check or a preset
failed (the table says which), 2 bad arguments, 3 no GPU / no CUDA.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PRESETS = ("tiny", "small", "paper", "gr00t_n16")
ENGINES = ("torch", "ort", "trt")
DEVICES = ("cpu", "cuda")
DEFAULT_ITERS = {"tiny": 20, "small": 10, "paper": 10, "gr00t_n16": 10}
TARGET_MS = 12.0          # full-size inference on an H100-class GPU
GROOT_TRT_MS = 23.0       # Isaac-GR00T's own TensorRT pipeline on an H100
# the paper preset without an Eagle checkpoint: its full-size head behind a stand-in backbone
PAPER_STANDIN = {"backbone": "standin", "standin_layers": 0, "standin_heads": 16, "standin_patch_size": 14}
# GR00T N1.6's action head (docs/IMPORT.md, "GR00T N1.6") on the paper preset, the same stand-in backbone
N16_HEAD = {"dit_layers": 32, "vl_cross_attention": "alternate", "adapter_layers": 0, "adapter_heads": 1,
            "max_state_dim": 128, "max_action_dim": 128, "horizon": 50, "action_steps": 8, "num_embodiments": 32}
BEGIN, END = "<!-- gpu_check:{device} begin -->", "<!-- gpu_check:{device} end -->"   # device:preset


class CheckError(Exception):
    """A usage or environment problem: the message says what to do; ``code`` is the exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class Row:
    preset: str
    engine: str
    device: str
    cuda_graph: str           # "on" | "off" | "n/a"
    batch: int
    backbone_ms: float
    action_head_ms: float
    chunk_ms: float
    total_ms: float
    max_abs_error: float      # against the torch engine, normalised padded actions
    tolerance: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.max_abs_error <= self.tolerance)


# ---- the environment ------------------------------------------------------------------------
def detect_gpu() -> str | None:
    """The first NVIDIA GPU's name from ``nvidia-smi --query-gpu=name``, or None when there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return names[0] if out.returncode == 0 and names else None


def _bench_engines():
    """bench/engines.py (a script, not a package), loaded from its path."""
    spec = importlib.util.spec_from_file_location("_lara_bench_engines", Path(__file__).with_name("engines.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _csv(text: str, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise CheckError(f"--{what}: empty list", 2)
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise CheckError(f"--{what}: unknown {what.rstrip('s')} {', '.join(repr(b) for b in bad)}; "
                             f"choose from {', '.join(allowed)}", 2)
    return list(dict.fromkeys(items))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,small,paper,gr00t_n16",
                   help="comma-separated, of tiny, small, paper, gr00t_n16")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--out", type=Path, required=True, help="working folder: bundles, exports, engines, results.json")
    p.add_argument("--docs", type=Path, default=None,
                   help="markdown file whose gpu_check section for --device is replaced (appended if absent)")
    p.add_argument("--device", choices=DEVICES, default="cuda", help="where torch runs (default cuda)")
    p.add_argument("--engines", default=None,
                   help="comma-separated, of torch, ort, trt (default: torch,ort,trt on cuda, torch,ort on cpu); "
                        "torch is the parity reference and always included")
    p.add_argument("--precision", choices=("fp16", "bf16", "fp32"), default="fp16", help="TensorRT precision")
    p.add_argument("--iters", type=int, default=None, help=f"timed iterations per engine (default {DEFAULT_ITERS})")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls per engine and batch (default 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of torch and ORT")
    p.add_argument("--paper-backbone", type=Path, default=None,
                   help="an Eagle-2-class checkpoint (with tokenizer) for the paper preset's backbone; "
                        "default: a stand-in backbone in front of the full-size head")
    p.add_argument("--gpu-name", default=None, help="the GPU's name for the docs (default: from nvidia-smi)")
    return p


def parse_args(argv: list[str] | None):
    p = build_parser()
    args = p.parse_args(argv)
    try:
        args.presets = _csv(args.presets, "presets", PRESETS)
        args.engines = _csv(args.engines or ("torch,ort,trt" if args.device == "cuda" else "torch,ort"), "engines",
                            ENGINES)
        try:
            args.batch = sorted({int(b) for b in _csv(args.batch, "batch")})
        except ValueError:
            raise CheckError(f"--batch: {args.batch!r} is not a comma-separated list of integers", 2) from None
        if args.batch[0] < 1:
            raise CheckError("--batch: batch sizes must be >= 1", 2)
        if "trt" in args.engines and args.device != "cuda":
            raise CheckError("--engines trt needs --device cuda (TensorRT runs on an NVIDIA GPU only)", 2)
        if args.iters is not None and args.iters < 1:
            raise CheckError("--iters must be >= 1", 2)
    except CheckError as e:
        p.error(str(e))          # exit status 2 with the usage line
    if "torch" not in args.engines:
        args.engines.insert(0, "torch")
    return args


def check_device(args) -> str:
    """The hardware line for the docs; raises CheckError(code 3) when --device cuda has no GPU."""
    if args.device == "cpu":
        cpu = _bench_engines().cpu_model()
        return f"CPU {cpu} ({os.cpu_count()} cores), no GPU used, {args.threads} threads"
    gpu = detect_gpu()
    if gpu is None:
        raise CheckError("no NVIDIA GPU found (nvidia-smi is missing or lists no GPU). This check needs one; on a "
                         "CPU-only machine run the CPU path: --device cpu --engines torch,ort", 3)
    import torch

    if not torch.cuda.is_available():
        raise CheckError(f"nvidia-smi sees {gpu!r} but torch {torch.__version__} has no CUDA (a CPU build?); "
                         f"install a CUDA build of torch into this environment", 3)
    return f"GPU {args.gpu_name or gpu}"


# ---- bundles and engines --------------------------------------------------------------------
def prepare_bundle(preset: str, args, log) -> tuple[Path, str]:
    """A random-weight bundle of ``preset`` in ``--out``, exported (and TensorRT-built when asked)."""
    from lara_g1.lara.bundle import create_random_bundle
    from lara_g1.policy_export.onnx_export import export_onnx

    path = args.out / preset
    note = ""
    overrides = {}
    if preset == "gr00t_n16":
        overrides = {**PAPER_STANDIN, **N16_HEAD}
        note = "GR00T N1.6's full-size head (32 blocks, horizon 50), stand-in backbone"
    elif preset == "paper":
        if args.paper_backbone is not None:
            overrides = {"backbone_path": str(args.paper_backbone)}
            note = f"Eagle backbone from {args.paper_backbone}"
        else:
            overrides = dict(PAPER_STANDIN)
            note = "full-size head, stand-in backbone"
    if path.exists():
        import shutil
        shutil.rmtree(path)
    log(f"{preset}: creating a random-weight bundle in {path}")
    create_random_bundle(path, preset="paper" if preset == "gr00t_n16" else preset, seed=0, **overrides)
    trt = "trt" in args.engines
    export_onnx(path, precisions=("fp32", args.precision) if trt else ("fp32",), seed=0, log=log)
    if trt:
        from lara_g1.policy_export.trt_build import build_trt
        build_trt(path, args.precision, max_batch=max(args.batch), seed=0, log=log)
    return path, note


class _NoGraph:
    """Stands for the action head's CUDA graph in a session that launches the head directly."""


def trt_engine(bundle: Path, precision: str, cuda_graph: bool):
    """The runtime's trt engine; ``cuda_graph=False`` swaps in a session whose action head is
    enqueued on every call instead of replayed from its CUDA graph (nothing else differs)."""
    from lara_g1.policy_export.trt_session import TrtSession
    from lara_g1.runtime.engines import load_engine

    engine = load_engine(bundle, "trt", precision=precision, seed=0)
    if cuda_graph:
        return engine

    class DirectHeadSession(TrtSession):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            real, session = self._cuda, self

            class Cuda:
                rt = real.rt

                def __call__(self, fn, *args):
                    if fn == "cudaGraphLaunch" and isinstance(args[0], _NoGraph):
                        session._enqueue("action_head")    # where the graph would be launched
                        return None
                    return real(fn, *args)
            self._cuda = Cuda()

        def _action_head_graph(self, batch):
            self._set_shapes("action_head", batch)
            return _NoGraph()

    engine.session.close()
    engine.session = DirectHeadSession(bundle, precision, manifest=engine.manifest)
    return engine


def load_engines(bundle: Path, args, log) -> dict[str, tuple[object, str, str, float]]:
    """``{label: (engine, device, cuda_graph, tolerance)}``; torch first (the reference)."""
    from lara_g1.policy_export.parity import ONNX_FP32_TOLERANCE
    from lara_g1.runtime.engines import load_engine

    out = {"torch": (load_engine(bundle, "torch", device=args.device, seed=0), args.device, "n/a", 0.0)}
    if "ort" in args.engines:
        e = load_engine(bundle, "ort", provider="cpu" if args.device == "cpu" else "auto", threads=args.threads, seed=0)
        provider = e.metadata["provider"].replace("ExecutionProvider", "")
        tol = ONNX_FP32_TOLERANCE if args.device == "cpu" else 1e-3
        out["ort"] = (e, f"ORT {provider}", "n/a", tol)
    if "trt" in args.engines:
        from lara_g1.policy_export.trt_build import TRT_TOLERANCE
        tol = TRT_TOLERANCE[args.precision]
        out[f"trt-{args.precision}"] = (trt_engine(bundle, args.precision, True), "TensorRT", "on", tol)
        out[f"trt-{args.precision} (no graph)"] = (trt_engine(bundle, args.precision, False), "TensorRT", "off", tol)
    for label, (_e, device, _, _) in out.items():
        log(f"loaded {label} on {device}")
    return out


def parity(engines: dict, batch: int) -> dict[str, float]:
    """Max abs error of each engine's padded normalised actions against the torch engine's."""
    from lara_g1.core.observation import make_noise

    bench = _bench_engines()
    ref_engine = engines["torch"][0]
    spec = ref_engine.spec
    inputs = spec.preprocessor(bench.observations(batch, spec.config.cameras[0], seed=100 + batch))
    noise = make_noise(batch, spec.horizon, spec.max_action_dim, seed=200 + batch)
    ref, _ = ref_engine.run_model(inputs, noise)
    return {label: float(np.max(np.abs(np.asarray(e.run_model(inputs, noise)[0], dtype=np.float32) - ref)))
            for label, (e, *_rest) in engines.items()}


def measure_preset(preset: str, args, log) -> list[Row]:
    bench = _bench_engines()
    bundle, note = prepare_bundle(preset, args, log)
    engines = load_engines(bundle, args, log)
    iters = args.iters or DEFAULT_ITERS[preset]
    rows = []
    try:
        for batch in args.batch:
            errors = parity(engines, batch)
            samples = bench.measure({label: e for label, (e, *_rest) in engines.items()}, batch, iters, args.warmup, log)
            for label, (_, device, graph, tol) in engines.items():
                med = {s: float(np.median(v)) for s, v in samples[label].items()}
                rows.append(Row(preset, label, device, graph, batch, med["backbone"], med["action_head"],
                                med["chunk"], med["total"], errors[label], tol, note))
    finally:
        for e, *_rest in engines.values():
            e.close()
    return rows


# ---- the report -----------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    lines = ["| preset | engine | runs on | CUDA graph | batch | backbone ms | action head ms | chunk ms | total ms "
             "| max abs error vs torch (tolerance) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = f"{r.max_abs_error:.2e}" if r.engine != "torch" else "reference"
        verdict = "" if r.engine == "torch" else (" ok" if r.ok else " **FAIL**")
        tol = "" if r.engine == "torch" else f" ({r.tolerance:g}){verdict}"
        preset = f"{r.preset} ({r.note})" if r.note else r.preset
        lines.append(f"| {preset} | {r.engine} | {r.device} | {r.cuda_graph} | {r.batch} | {r.backbone_ms:.2f} "
                     f"| {r.action_head_ms:.2f} | {r.chunk_ms:.2f} | {r.total_ms:.2f} | {err}{tol} |")
    return "\n".join(lines)


def target_line(rows: list[Row]) -> str:
    """The 12 ms target against this run's best TensorRT paper chunk at batch 1 (GPU runs only)."""
    best = [r for r in rows if r.preset == "paper" and r.engine.startswith("trt") and r.batch == 1]
    if not best:
        return ""
    r = min(best, key=lambda x: x.chunk_ms)
    met = "met" if r.chunk_ms <= TARGET_MS else "NOT met"
    scope = ("backbone + head" if "Eagle" in r.note else
             "the full-size head behind a stand-in backbone: the Eagle backbone's time is not included")
    return (f"Target: paper full-size inference <= {TARGET_MS:g} ms on an H100-class GPU (Isaac-GR00T's TensorRT "
            f"pipeline: {GROOT_TRT_MS:g} ms on an H100). This run, {r.engine} CUDA graph {r.cuda_graph}, batch 1: "
            f"chunk {r.chunk_ms:.2f} ms (action head {r.action_head_ms:.2f} ms, end to end {r.total_ms:.2f} ms) "
            f"-> {met} for {scope}.")


def block_key(device: str, preset: str) -> str:
    return f"{device}:{preset}"


def report_block(preset: str, rows: list[Row], failures: list[str], args, hardware: str, argv: list[str]) -> str:
    """One preset's section: heading with the hardware, versions and command, table, failures, target."""
    import onnxruntime
    import torch

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    trt = ""
    if "trt" in args.engines:
        try:
            import tensorrt
            trt = f", TensorRT {tensorrt.__version__}"
        except ImportError:
            pass
    key = block_key(args.device, preset)
    cmd = " ".join(["python bench/gpu_check.py", *argv])
    lines = [BEGIN.format(device=key),
             f"### {preset}, {args.device}: {hardware}",
             "",
             f"{when}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}{trt}, Python "
             f"{platform.python_version()}; random-weight bundle (seed 0); medians over "
             f"{args.iters or DEFAULT_ITERS[preset]} round-robin iterations after {args.warmup} warm-up calls per "
             f"engine and batch; load average {os.getloadavg()[0]:.1f} at the end. `{cmd}`",
             ""]
    if rows:
        lines += [table(rows), ""]
    if failures:
        lines += [f"- **failed**: {f}" for f in failures] + [""]
    target = target_line(rows) if args.device == "cuda" else ""
    if target:
        lines += [target, ""]
    return "\n".join(lines).rstrip("\n") + "\n" + END.format(device=key) + "\n"


def update_docs(path: Path, block: str, key: str) -> None:
    """Put ``block`` into ``path`` as its ``gpu_check:{key}`` section: in place of the old one, else
    after the last gpu_check section of the same device, else after the last gpu_check section,
    else at the end. The rest of the file is left as it is."""
    text = path.read_text() if path.exists() else ""
    begin, end = BEGIN.format(device=key), END.format(device=key)
    block = block.rstrip("\n")
    if begin in text and end in text.split(begin, 1)[1]:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        device = key.split(":")[0]
        ends = list(re.finditer(r"<!-- gpu_check:(\S+) end -->", text))
        same = [m for m in ends if m.group(1).split(":")[0] == device]
        after = (same or ends or [None])[-1]
        if after is None:
            text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
        else:
            text = text[:after.end()] + "\n\n" + block + text[after.end():]
    path.write_text(text if text.endswith("\n") else text + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(f"[gpu_check] {msg}", file=sys.stderr, flush=True)

    try:
        hardware = check_device(args)
    except CheckError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return e.code
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log(f"{hardware}; presets {', '.join(args.presets)}; engines {', '.join(args.engines)}; batch {args.batch}")
    rows: dict[str, list[Row]] = {}
    failures: dict[str, list[str]] = {}
    for preset in args.presets:
        try:
            rows[preset] = measure_preset(preset, args, log)
        except Exception as e:  # noqa: BLE001 - one preset's failure is reported; the others still run
            traceback.print_exc()
            rows[preset] = []
            failures[preset] = [f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"]
            continue
        failures[preset] = [f"{r.engine} batch {r.batch}: max abs error {r.max_abs_error:.3g} > {r.tolerance:g}"
                            for r in rows[preset] if r.engine != "torch" and not r.ok]
    (args.out / "results.json").write_text(json.dumps(
        {"hardware": hardware, "rows": [asdict(r) for preset in args.presets for r in rows[preset]],
         "failures": {p: f for p, f in failures.items() if f}}, indent=2) + "\n")
    for preset in args.presets:
        block = report_block(preset, rows[preset], failures[preset], args, hardware, argv)
        print(block)
        if args.docs is not None:
            update_docs(args.docs, block, block_key(args.device, preset))
    if args.docs is not None:
        log(f"wrote {len(args.presets)} section(s) into {args.docs}")
    return 1 if any(failures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
