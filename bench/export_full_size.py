"""Export the full-size (paper preset) action head to ONNX with external data and check it on ONNX Runtime CPU.

    python bench/export_full_size.py --out DIR [--model paper|gr00t_n16] [--precisions fp32,fp16] [--seed 0]
                                     [--vl-tokens 320] [--threads N] [--iters 3] [--external-data-threshold 0]

The paper preset's action head (16 DiT blocks, width 1536, cross-attention 2048; about 1.2 B
parameters with all 64 embodiments' rows) is built ALONE with seeded random weights: no backbone,
so nothing here depends on the Eagle backbone's implementation or needs its checkpoint. For each
precision, in a fresh child process (so each peak RSS is that precision's own):

1. build the head (``torch.manual_seed(seed)``), draw VL features ``[1, vl_tokens, 2048]`` (plus the
   pad-mask channel the paper preset packs last, the last 10 % of the tokens padding), a state and
   flow noise (batch 1, seeded);
2. the torch reference: ``LaraPolicy.sample`` (eager, fp32) on those inputs;
3. export the deployed head (``DeployedActionHead``, traced at batch 2) with
   ``lara_g1.policy_export.onnx_export.export_action_head``: ``{out}/{precision}/action_head[.fp16].onnx`` plus
   its external-data file ``.onnx.data`` (``--external-data-threshold 0``, the default here, forces
   external data at any size; lara-export's default is 1.8 GB), checked by ``onnx.checker`` from the path;
4. ONNX Runtime CPU from the file path, same inputs: max abs error against the torch reference, and the
   median latency over ``--iters`` runs after one warm-up run.

It prints, per precision: max abs error, peak RSS (``ru_maxrss``) after each phase, export time and
ORT latency, and writes ``{out}/results.json``. Nothing is written outside ``--out``.

``--model gr00t_n16``: GR00T N1.6's head instead (:data:`N16_HEAD`: 32 DiT blocks alternating text
and image cross-attention, 128-wide state/action, horizon 50, 32 embodiment rows, vlln only), with
the pad and image masks packed as the VL tensor's last two channels.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PRECISIONS = ("fp32", "fp16")


def _rss_gb() -> float:
    """Peak resident set size of this process so far, GB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _current_rss_gb() -> float:
    """Resident set size of this process now, GB (Linux /proc)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


def _log(msg: str) -> None:
    print(f"[export_full_size] {msg}", file=sys.stderr, flush=True)


#: GR00T N1.6's action-head sizes (docs/IMPORT.md, "GR00T N1.6") over the paper preset
N16_HEAD = {"dit_layers": 32, "vl_cross_attention": "alternate", "adapter_layers": 0, "adapter_heads": 1,
            "max_state_dim": 128, "max_action_dim": 128, "horizon": 50, "action_steps": 8, "num_embodiments": 32,
            "timestep_freq_shift": 1}
MODELS = {"paper": {}, "gr00t_n16": N16_HEAD}


def build_head_policy(seed: int, **overrides):
    """The paper preset's action head with seeded random weights, wrapped so that ``sample`` is
    ``LaraPolicy.sample`` itself (the reference the export's parity check uses) without a backbone."""
    import torch
    from torch import nn

    from lara_g1.lara.model.config import PolicyConfig
    from lara_g1.lara.model.policy import ActionHead, LaraPolicy

    class HeadOnlyPolicy(nn.Module):
        velocity = LaraPolicy.velocity
        sample = LaraPolicy.sample

        def __init__(self, config, head):
            super().__init__()
            self.config, self.head = config, head

    config = PolicyConfig.from_preset("paper", **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = ActionHead(config)
    return HeadOnlyPolicy(config, head).eval()


def run_one(precision: str, out: Path, seed: int, vl_tokens: int, threads: int, iters: int, threshold: int,
            model: str = "paper") -> dict:
    """One precision, in this process: build, reference, export, ORT. Returns the measurements."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from lara_g1.core.embodiment import load_embodiment
    from lara_g1.core.observation import make_noise
    from lara_g1.policy_export.onnx_export import export_action_head, onnx_file_name

    torch.set_num_threads(threads)
    r: dict = {"model": model, "precision": precision, "threads": threads, "vl_tokens": vl_tokens, "seed": seed}
    t0 = time.perf_counter()
    policy = build_head_policy(seed, **MODELS[model])
    cfg = policy.config
    r["head_parameters"] = sum(p.numel() for p in policy.head.parameters())
    r["build_s"] = time.perf_counter() - t0
    r["peak_rss_gb_after_build"] = _rss_gb()
    _log(f"{precision}: built the paper action head ({r['head_parameters'] / 1e9:.3f} B parameters) "
         f"in {r['build_s']:.1f} s; peak RSS {r['peak_rss_gb_after_build']:.2f} GB")

    eid = load_embodiment(cfg.embodiment).embodiment_id
    rng = np.random.default_rng(seed)

    def inputs(batch: int):
        vl = rng.standard_normal((batch, vl_tokens, cfg.vl_dim), dtype=np.float32)
        if cfg.mask_vl_padding:   # the paper preset: the pad mask travels as a last channel (policy.pack_vl)
            mask = np.ones((batch, vl_tokens), dtype=np.float32)
            mask[:, vl_tokens - vl_tokens // 10:] = 0.0     # the last 10 % are pad tokens
            channels = [mask]
            if cfg.vl_cross_attention == "alternate":      # N1.6: the image mask, a middle run of tokens
                image = np.zeros((batch, vl_tokens), dtype=np.float32)
                image[:, vl_tokens // 4: vl_tokens // 4 + vl_tokens // 3] = 1.0
                channels.append(image)
            vl = np.concatenate([vl, *(c[..., None] for c in channels)], axis=-1)
        state = rng.uniform(-1.0, 1.0, (batch, cfg.max_state_dim)).astype(np.float32)
        noise = make_noise(batch, cfg.horizon, cfg.max_action_dim, seed=int(rng.integers(2**31)))
        return vl, state, noise

    vl, state, noise = inputs(1)
    with torch.no_grad():
        t0 = time.perf_counter()
        ref = policy.sample(torch.from_numpy(vl), torch.from_numpy(state), torch.full((1,), eid, dtype=torch.int64),
                            torch.from_numpy(noise)).numpy()
        r["torch_ms"] = (time.perf_counter() - t0) * 1e3
    _log(f"{precision}: torch eager fp32 reference (batch 1): {r['torch_ms']:.0f} ms")

    folder = out / precision
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / onnx_file_name("action_head", precision)
    trace = tuple(torch.from_numpy(a) for a in inputs(2))    # traced at batch 2, as lara-export does
    t0 = time.perf_counter()
    data = export_action_head(policy, eid, trace, path, precision, external_data_threshold=threshold)
    r["export_s"] = time.perf_counter() - t0
    r["peak_rss_gb_after_export"] = _rss_gb()
    r["onnx_file"] = str(path.relative_to(out))
    r["onnx_bytes"] = path.stat().st_size
    r["data_file"] = str(data.relative_to(out)) if data else None
    r["data_bytes"] = data.stat().st_size if data else 0
    _log(f"{precision}: exported {path.name} ({r['onnx_bytes'] / 1e6:.2f} MB) + "
         f"{data.name if data else 'no data file'} ({r['data_bytes'] / 1e9:.3f} GB) in {r['export_s']:.1f} s; "
         f"peak RSS {r['peak_rss_gb_after_export']:.2f} GB")
    del trace, policy
    import gc
    gc.collect()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])   # the path: finds the .data
    r["ort_load_s"] = time.perf_counter() - t0
    r["rss_gb_with_ort_session"] = _current_rss_gb()     # the torch head was released after the export
    feed = {"vl_features": vl, "state": state, "noise": noise}
    t0 = time.perf_counter()
    got = sess.run(None, feed)[0]
    r["ort_first_run_ms"] = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        again = sess.run(None, feed)[0]
        times.append((time.perf_counter() - t0) * 1e3)
    r["ort_ms_median"] = float(np.median(times)) if times else float("nan")
    r["ort_ms_min"] = float(np.min(times)) if times else float("nan")
    r["ort_deterministic"] = bool(not times or np.array_equal(again, got))
    r["max_abs_error_vs_torch_fp32"] = float(np.max(np.abs(got - ref)))
    r["peak_rss_gb"] = _rss_gb()
    r["rss_gb_after_ort_runs"] = _current_rss_gb()
    r["torch"], r["onnxruntime"] = torch.__version__, ort.__version__
    _log(f"{precision}: ORT CPU vs torch fp32 max abs error {r['max_abs_error_vs_torch_fp32']:.3g}; "
         f"ORT load {r['ort_load_s']:.1f} s, median {r['ort_ms_median']:.0f} ms over {iters} runs; "
         f"RSS with the ORT session {r['rss_gb_after_ort_runs']:.2f} GB, peak RSS {r['peak_rss_gb']:.2f} GB")
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the graphs and results.json (nothing else is written)")
    p.add_argument("--model", choices=tuple(MODELS), default="paper",
                   help="paper: GR00T N1.5 / LARA sizes; gr00t_n16: GR00T N1.6's head (default: paper)")
    p.add_argument("--precisions", default="fp32,fp16", help="comma-separated, of fp32, fp16 (default both)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the inputs (default 0)")
    p.add_argument("--vl-tokens", type=int, default=320,
                   help="VL tokens the head cross-attends to (default 320: 256 image patches of a 224 px frame "
                        "at patch 14, plus 64 text tokens)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and ORT CPU threads")
    p.add_argument("--iters", type=int, default=3, help="timed ORT runs after one warm-up run (default 3)")
    p.add_argument("--external-data-threshold", type=int, default=0,
                   help="bytes above which the weights go to the .data file (default 0: always)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    bad = sorted(set(precisions) - set(PRECISIONS))
    if bad or not precisions:
        p.error(f"unknown precision(s) {bad}; use {', '.join(PRECISIONS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:   # one precision in this process; the result as the last line of stdout
        r = run_one(precisions[0], args.out, args.seed, args.vl_tokens, args.threads, args.iters,
                    args.external_data_threshold, args.model)
        print(json.dumps(r))
        return 0

    results = []
    for precision in precisions:
        cmd = [sys.executable, __file__, "--child", "--out", str(args.out), "--precisions", precision,
               "--seed", str(args.seed), "--vl-tokens", str(args.vl_tokens), "--threads", str(args.threads),
               "--iters", str(args.iters), "--external-data-threshold", str(args.external_data_threshold),
               "--model", args.model]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        if proc.returncode != 0:
            _log(f"{precision}: the child process failed with exit code {proc.returncode} "
                 f"({'killed: out of memory?' if proc.returncode in (-9, 137) else 'see its log above'})")
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["wall_s"] = time.perf_counter() - t0
        results.append(r)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| precision | graph + external data | max abs error vs torch fp32 | peak RSS GB (build / export / ORT) "
          "| export s | ORT CPU batch 1 ms (median) | torch eager ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['precision']} | {r['onnx_bytes'] / 1e6:.2f} MB + {r['data_bytes'] / 1e9:.3f} GB "
              f"| {r['max_abs_error_vs_torch_fp32']:.2e} | {r['peak_rss_gb_after_build']:.1f} / "
              f"{r['peak_rss_gb_after_export']:.1f} / {r['peak_rss_gb']:.1f} | {r['export_s']:.0f} "
              f"| {r['ort_ms_median']:.0f} | {r['torch_ms']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
