"""``lara-import``: released checkpoints -> lara-g1 policy bundles (docs/IMPORT.md).

    lara-import gr00t CKPT_DIR --out BUNDLE --assets DIR [--embodiment g1] [--row N|TAG]
                               [--lam-encoder DIR | --no-lam] [--max-text-len N]
                               [--action-steps N] [--camera-size HxW]

CKPT_DIR is a GR00T N1.5, LARA release or GR00T N1.6 checkpoint as Hugging Face stores it. The
bundle it writes is what ``lara-train joint --init``, ``lara-export`` and ``lara-serve`` take.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lara_g1.core.errors import LaraError


def _row(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 480x640, got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lara-import", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="family", required=True)
    g = sub.add_parser("gr00t", help="GR00T N1.5 base, the LARA release (gr00t_n1_5) or GR00T N1.6 (Gr00tN1d6)")
    g.add_argument("checkpoint", type=Path, help="checkpoint directory (config.json + model*.safetensors)")
    g.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    g.add_argument("--assets", type=Path,
                   help="GR00T's eagle2_hg_model/ (Eagle config + tokenizer; shipped in GR00T's package)")
    g.add_argument("--embodiment", default="g1", help="lara-g1 embodiment (default: %(default)s)")
    g.add_argument("--row", type=_row, help="checkpoint embodiment row that becomes the G1's row, a number or "
                   "(N1.6) a tag of embodiment_id.json (default: new_embodiment: 31 in N1.5, 40 in LARA, 10 in N1.6)")
    g.add_argument("--lam-encoder", type=Path, help="LARA: the frozen ViT-MAE (facebook/vit-mae-large layout)")
    g.add_argument("--no-lam", action="store_true", help="LARA: import the policy without its LAM")
    g.add_argument("--max-text-len", type=int, default=32,
                   help="instruction token budget of the prompt (default: %(default)s)")
    g.add_argument("--action-steps", type=int,
                   help="chunk steps served (N1.6 predicts 50; default: all, or the checkpoint's own)")
    g.add_argument("--camera-size", type=_size, help="N1.6: the camera's raw HxW, which fixes the model's "
                   "input shape (default 480x640, the D455's)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lara_g1.lara.checkpoints.importer import import_gr00t

    if args.out.exists() and any(args.out.iterdir()):
        print(f"lara-import: error: {args.out} exists and is not empty; choose another --out", file=sys.stderr)
        return 2
    try:
        report = import_gr00t(args.checkpoint, args.out, embodiment=args.embodiment, row=args.row,
                              assets=args.assets, lam_encoder=args.lam_encoder, no_lam=args.no_lam,
                              max_text_len=args.max_text_len, action_steps=args.action_steps,
                              camera_size=args.camera_size, progress=not args.no_progress)
    except (LaraError, OSError) as exc:
        print(f"lara-import: error: {exc}", file=sys.stderr)
        return 2
    counts = report.parameters
    print(f"lara-import: {report.variant}: {report.tensors} tensors, {counts['total']:,} parameters "
          f"(backbone {counts.get('backbone', 0):,}, adapter {counts.get('adapter', 0):,}, "
          f"head {counts.get('head', 0):,})")
    for note in report.notes:
        print(f"lara-import: {note}")
    print(f"lara-import: wrote {report.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
