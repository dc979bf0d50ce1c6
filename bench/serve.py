"""Serving benchmark: protocol and server overhead at batch 1, and throughput vs concurrent clients.

    python bench/serve.py [--bundle B | --preset small] [--engine ort] [--per-client 5] [--clients 1,4,8]

In one run, on one machine:
1. the engine's own time at batch 1 (``engine.infer`` called directly);
2. the round-trip time of ``PolicyClient.infer`` through a local ``PolicyServer`` at batch 1, and
   the overhead (round trip minus the engine time the server measured for the same request) as a
   fraction of the engine time;
3. throughput (chunks/s) with N concurrent clients (one process and REQ socket each), batching on
   (``--max-batch``) and off (max batch 1), and the mean batch the engine was called with.

Without ``--bundle`` a random bundle of ``--preset`` is created (and exported to ONNX for
``--engine ort``) in a temporary directory. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _bundle(args, tmp: Path) -> Path:
    if args.bundle:
        return Path(args.bundle)
    from lara_g1.lara.bundle import create_random_bundle

    path = create_random_bundle(tmp / f"bench-{args.preset}", preset=args.preset, seed=0)
    if args.engine in ("ort", "trt"):
        from lara_g1.policy_export.cli import main as lara_export

        flags = ["--onnx"] if args.engine == "ort" else ["--trt"]
        if lara_export([str(path), *flags, "--seed", "0"]) != 0:
            raise SystemExit("export failed")
    return path


def _inputs(meta: dict, h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cams = list(meta["cameras"])
    images = {c: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for c in cams}
    state = np.asarray(meta["embodiment"]["default_pose"], dtype=np.float32)
    return state, images


def engine_time(engine, state, images, n: int) -> list[float]:
    from lara_g1.core.observation import Observation, make_noise

    meta = engine.metadata
    obs = [Observation(images=images, state=state)]
    out = []
    for i in range(n):
        noise = make_noise(1, meta["horizon"], meta["max_action_dim"], i)
        t = time.perf_counter()
        engine.infer(obs, noise=noise)
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def round_trips(address: str, state, images, n: int) -> tuple[list[float], list[tuple[float, float]]]:
    """Round-trip ms, and per request (round trip - the engine time the server measured, that engine time)."""
    from lara_g1.runtime.client import PolicyClient

    rtt, overhead = [], []
    with PolicyClient(address, timeout_s=60) as c:
        for i in range(n):
            t = time.perf_counter()
            reply = c.infer(state, images, noise_seed=i)
            ms = (time.perf_counter() - t) * 1000.0
            rtt.append(ms)
            overhead.append((ms - reply.timing_ms["engine"], reply.timing_ms["engine"]))
    return rtt, overhead


def _client_process(address: str, state, images, requests: int, start, results) -> None:
    """One robot: its own process (as on a real deployment), ``requests`` chunks back to back."""
    from lara_g1.runtime.client import PolicyClient, ServerError, ServerTimeout

    latencies, failure = [], None
    with PolicyClient(address, timeout_s=300) as c:
        c.infer(state, images)  # connect and warm up before the clock starts
        start.wait()
        for _ in range(requests):
            t = time.perf_counter()
            try:
                c.infer(state, images)
            except (ServerError, ServerTimeout) as exc:  # reported after the run, never hidden
                failure = repr(exc)
                break
            latencies.append((time.perf_counter() - t) * 1000.0)
    results.put((time.perf_counter(), latencies, failure))


def throughput(server, state, images, clients: int, requests: int) -> tuple[float, float, float]:
    """Chunks per second with ``clients`` client processes sending ``requests`` chunks each
    (all work / time until the last client is done), the p50 latency, and the mean batch the
    engine ran (counted from the start signal, after the clients' warm-up requests)."""
    address, m = server.address, server.metrics
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_client_process, args=(address, state, images, requests, start, results))
             for _ in range(clients)]
    for pr in procs:
        pr.start()
    before = (m.engine_calls, m.batched_observations)
    start.wait(timeout=600)
    t0 = time.perf_counter()
    outcomes = [results.get(timeout=3600) for _ in procs]
    calls, observations = m.engine_calls - before[0], m.batched_observations - before[1]
    for pr in procs:
        pr.join(30)
    failures = [f for _, _, f in outcomes if f]
    if failures:
        raise RuntimeError(f"{len(failures)} clients failed during the throughput run, e.g. {failures[0]}")
    lat = [x for _, lats, _ in outcomes for x in lats]
    return len(lat) / (max(t for t, _, _ in outcomes) - t0), statistics.median(lat), observations / calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", help="policy bundle (default: a random one of --preset)")
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--engine", default="ort", choices=["ort", "torch", "trt"])
    p.add_argument("--iters", type=int, default=40, help="batch-1 iterations for engine and round-trip times")
    p.add_argument("--per-client", type=int, default=5, help="chunks each client requests per throughput measurement")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of every throughput configuration")
    p.add_argument("--clients", default="1,4,8")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--batch-window-ms", type=float, default=2.0)
    p.add_argument("--image", default="224x224", help="HxW of the frames sent (e.g. 480x640 for a D455)")
    args = p.parse_args(argv)
    h, w = (int(x) for x in args.image.lower().split("x"))
    client_counts = [int(x) for x in args.clients.split(",")]

    from lara_g1.runtime.engines import load_engine
    from lara_g1.runtime.server import PolicyServer

    with tempfile.TemporaryDirectory() as tmp:
        bundle = _bundle(args, Path(tmp))
        engine = load_engine(bundle, args.engine)
        meta = engine.metadata
        state, images = _inputs(meta, h, w)
        engine_time(engine, state, images, 5)  # warm-up

        # Alternate engine-only and round-trip blocks so drift (other load on the machine) hits both.
        eng_ms, rtt_ms, over_ms = [], [], []
        with PolicyServer(engine, "tcp://127.0.0.1:*", max_batch=args.max_batch,
                          batch_window_ms=args.batch_window_ms) as server:
            round_trips(server.address, state, images, 3)
            for _ in range(4):
                eng_ms += engine_time(engine, state, images, args.iters // 4)
                r, o = round_trips(server.address, state, images, args.iters // 4)
                rtt_ms += r
                over_ms += o
        eng = statistics.median(eng_ms)
        rtt = statistics.median(rtt_ms)
        over = statistics.median(o for o, _ in over_ms)
        eng_in_server = statistics.median(e for _, e in over_ms)
        ratio = statistics.median(o / e for o, e in over_ms)  # paired: robust to load drifting over the run

        # Throughput: both servers up at once (used one at a time); configurations alternate over
        # rounds so that load from elsewhere on the machine spreads over all of them.
        servers = {"on": PolicyServer(engine, "tcp://127.0.0.1:*", max_batch=args.max_batch,
                                      batch_window_ms=args.batch_window_ms, queue_size=64).start(),
                   "off": PolicyServer(engine, "tcp://127.0.0.1:*", max_batch=1, queue_size=64).start()}
        tput: dict[tuple[str, int], list[float]] = {}
        lat: dict[tuple[str, int], list[float]] = {}
        batches: dict[tuple[str, int], list[float]] = {}
        try:
            for _ in range(args.rounds):
                for n in client_counts:
                    for batching, server in servers.items():
                        t, p50, mean_batch = throughput(server, state, images, n, args.per_client)
                        tput.setdefault((batching, n), []).append(t)
                        lat.setdefault((batching, n), []).append(p50)
                        batches.setdefault((batching, n), []).append(mean_batch)
        finally:
            for server in servers.values():
                server.stop()
        rows = []
        for (batching, n), ts in tput.items():
            rows.append((batching, n, statistics.median(ts), statistics.median(lat[(batching, n)]),
                         statistics.mean(batches[(batching, n)])))
        rows.sort(key=lambda r: (r[0] != "on", r[1]))
        engine.close()

    print(f"\nlara-serve benchmark: bundle {meta['model_id']} ({args.preset if not args.bundle else bundle}), "
          f"engine {args.engine}, frames {h}x{w}, {args.iters} iterations at batch 1")
    print("\n| measure (batch 1) | median ms |\n|---|---|")
    print(f"| engine.infer called directly | {eng:.2f} |")
    print(f"| engine time measured inside the server | {eng_in_server:.2f} |")
    print(f"| client round trip through lara-serve | {rtt:.2f} |")
    print(f"| overhead per request (round trip - that request's engine time) | {over:.2f} |")
    print(f"\noverhead ratio (median over requests of overhead / engine time): {ratio:.1%}")
    print(f"\nthroughput: median of {args.rounds} rounds per configuration; each client (a process) requests "
          f"{args.per_client} chunks back to back; chunks/s = all chunks / time until the last client is done")
    print("\n| batching | clients | chunks/s | p50 latency ms | mean batch |\n|---|---|---|---|---|")
    for b, n, t, p50, mb in rows:
        print(f"| {b} (max batch {args.max_batch if b == 'on' else 1}) | {n} | {t:.2f} | {p50:.1f} | {mb:.2f} |")
    first, last = client_counts[0], client_counts[-1]
    for b in ("on", "off"):
        base = [t for bb, n, t, _, _ in rows if bb == b and n == first]
        top = [t for bb, n, t, _, _ in rows if bb == b and n == last]
        if base and top and base[0] > 0:
            print(f"throughput {last} vs {first} clients, batching {b}: {top[0] / base[0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
