"""``lara-export BUNDLE [--onnx] [--trt] [--precision fp32|fp16|bf16] [--embodiment g1] [--opset N] [--deploy DIR]``.

``--onnx`` (the default when neither is given) writes ``onnx/backbone.onnx`` and
``onnx/action_head.onnx`` (fp32, parity-checked; plus ``{stage}.{precision}.onnx`` when
``--precision`` is fp16/bf16) and ``manifest.json``. ``--trt`` builds TensorRT engines of
``--precision`` (default fp16) on this machine's GPU from those graphs, exporting them first when
they are missing, and checks their parity against torch. ``--deploy DIR`` then copies what
``lara-serve --engine ort|trt`` reads (config, stats, manifest, exported files; no torch weights)
to ``DIR``, each file checked against the manifest.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lara_g1.lara.manifest import Manifest, ManifestError
from lara_g1.policy_export.onnx_export import DEFAULT_OPSET, ExportError, export_onnx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lara-export", description=__doc__.split("\n\n")[1].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="policy bundle directory (written by lara-train)")
    p.add_argument("--onnx", action="store_true", help="export the ONNX graphs (default)")
    p.add_argument("--trt", action="store_true", help="build TensorRT engines on this GPU (needs lara-g1[trt])")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                   help="TensorRT engine precision (default fp16); with --onnx only, also writes graphs of "
                        "this precision next to the fp32 ones")
    p.add_argument("--embodiment", default=None, help="embodiment to deploy (must be the bundle's; default: it)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch of the TensorRT engines (default 8)")
    p.add_argument("--seed", type=int, default=None, help="seed of the parity inputs (default: fresh each run)")
    p.add_argument("--deploy", type=Path, metavar="DIR",
                   help="after exporting, write a serving-only copy (ort/trt engines; no torch weights) to DIR")
    return p


def _has_onnx(bundle: Path, precision: str) -> bool:
    try:
        m = Manifest.load(bundle)
        m.get("backbone", "onnx", precision)
        m.get("action_head", "onnx", precision)
        return True
    except ManifestError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lara_g1.core.extras import MissingExtraError
    from lara_g1.lara.bundle import BundleError
    from lara_g1.policy_export.deploy import DeployError, write_deployment

    onnx = args.onnx or not args.trt
    trt_precision = args.precision or "fp16"
    try:
        if args.trt:   # fail before the export when TensorRT cannot be used here
            from lara_g1.policy_export.trt_session import query_device
            query_device()
        if onnx or (args.trt and not _has_onnx(args.bundle, trt_precision)):
            precisions = tuple(sorted({"fp32", args.precision or "fp32", trt_precision if args.trt else "fp32"}))
            export_onnx(args.bundle, precisions=precisions, opset=args.opset, embodiment=args.embodiment,
                        seed=args.seed)
        if args.trt:
            from lara_g1.policy_export.trt_build import build_trt
            build_trt(args.bundle, trt_precision, max_batch=args.max_batch, seed=args.seed)
        if args.deploy:
            write_deployment(args.bundle, args.deploy)
            print(f"lara-export: serving-only copy in {args.deploy}")
    except (BundleError, DeployError, ExportError, ManifestError, MissingExtraError, OSError, RuntimeError,
            ValueError) as e:
        print(f"lara-export: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
