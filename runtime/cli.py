"""``lara-serve``: serve a policy bundle over ZMQ, with the status dashboard.

    lara-serve --policy BUNDLE --engine ort [--bind tcp://127.0.0.1:5555] [--dashboard 127.0.0.1:8080|off]
               [--token-file F] [--max-batch N] [--batch-window-ms MS] [--queue N] [--insecure]

SIGINT and SIGTERM stop it cleanly (exit status 0).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger("lara.serve")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lara-serve", description="Serve a LARA policy bundle over ZMQ (docs/PROTOCOL.md).")
    p.add_argument("--policy", required=True, type=Path, help="policy bundle directory")
    p.add_argument("--engine", default="ort", choices=["trt", "ort", "torch"], help="inference engine (default ort)")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZMQ endpoint to bind (default tcp://127.0.0.1:5555)")
    p.add_argument("--dashboard", default="127.0.0.1:8080", help="HOST:PORT of the status dashboard, or 'off'")
    p.add_argument("--token-file", type=Path, help="file holding the token clients must send")
    p.add_argument("--max-batch", type=int, default=8, help="observations per engine call (default 8)")
    p.add_argument("--batch-window-ms", type=float, default=2.0,
                   help="how long to wait for concurrent requests to batch (default 2 ms)")
    p.add_argument("--queue", type=int, default=64, help="pending requests before answering busy (default 64)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --bind without a token")
    p.add_argument("--compile", action="store_true", help="torch engine: torch.compile the model")
    p.add_argument("--device", help="torch engine: torch device (default cpu)")
    p.add_argument("--provider", choices=["auto", "cpu", "cuda"], help="ort engine: execution provider (default auto)")
    p.add_argument("--threads", type=int, help="ort engine: intra-op threads (default: onnxruntime's)")
    p.add_argument("--precision", choices=["fp16", "bf16", "fp32"], help="trt engine: engine precision (default fp16)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


ENGINE_OPTIONS = {"torch": ("compile", "device"), "ort": ("provider", "threads"), "trt": ("precision",)}


def _engine_options(args: argparse.Namespace) -> dict:
    """The engine options given on the command line; an option of another engine is an error."""
    given = {name for names in ENGINE_OPTIONS.values() for name in names if getattr(args, name) not in (None, False)}
    foreign = sorted(given - set(ENGINE_OPTIONS[args.engine]))
    if foreign:
        raise ValueError(f"--{', --'.join(foreign)} does not apply to --engine {args.engine}")
    return {name: getattr(args, name) for name in given}


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SystemExit(f"lara-serve: cannot read --token-file {path}: {exc.strerror}") from None
    if not token:
        raise SystemExit(f"lara-serve: --token-file {path} is empty")
    return token


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        engine_options = _engine_options(args)
    except ValueError as exc:
        print(f"lara-serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = _read_token(args.token_file) if args.token_file else None

    from lara_g1.runtime.server import PolicyServer, is_loopback

    if not is_loopback(args.bind) and token is None and not args.insecure:
        print(f"lara-serve: refusing to bind {args.bind} without a token (--token-file), since it is not a "
              f"loopback address; pass --insecure only on a trusted network", file=sys.stderr)
        return 2
    from lara_g1.runtime.dashboard.app import DashboardServer
    from lara_g1.runtime.dashboard.http import parse_hostport

    try:
        dash_addr = None if args.dashboard.lower() == "off" else parse_hostport(args.dashboard)
    except ValueError as exc:
        print(f"lara-serve: --dashboard: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    from lara_g1.runtime.engines import load_engine

    try:
        engine = load_engine(args.policy, args.engine, **engine_options)
    except Exception as exc:  # bundle and engine errors carry their own explanation
        print(f"lara-serve: cannot load {args.engine} engine from {args.policy}: {exc}", file=sys.stderr)
        return 1
    server = dashboard = None
    try:
        server = PolicyServer(engine, args.bind, token=token, max_batch=args.max_batch,
                              batch_window_ms=args.batch_window_ms, queue_size=args.queue,
                              insecure=args.insecure).start()
        print(f"lara-serve: {server.model_id} ({server.engine_kind}) on {server.address}", flush=True)
        if dash_addr is not None:
            dashboard = DashboardServer(server, *dash_addr).start()
            print(f"lara-serve: dashboard on {dashboard.url}", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                log.error("server threads died; exiting")
                return 1
    except (OSError, ValueError) as exc:
        print(f"lara-serve: {exc}", file=sys.stderr)
        return 1
    finally:
        if dashboard is not None:
            dashboard.stop()
        if server is not None:
            server.stop()
        engine.close()
    print("lara-serve: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
