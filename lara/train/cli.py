"""``lara-train``: LAM pre-training (stage 1) and LARA joint training (stages 2 and 3).

    lara-train lam   --dataset DIR [--video DIR ...] --preset P --steps N --out DIR
    lara-train joint --dataset DIR --preset P --steps N --out BUNDLE [--init BUNDLE] [--lam DIR]
                     [--no-align] [--freeze-lam] [--batch-size B] [--lr LR] [--seed S]
                     [--lam-offset K] [--checkpoint-every N] [--resume]

Post-training an existing policy is ``joint --init BUNDLE`` on the target robot's
demonstrations. Several GPUs: ``torchrun --nproc-per-node G -m lara_g1.lara.train.cli joint ...``
(or the ``lara-train`` script under torchrun); each rank takes ``--batch-size`` samples.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from lara_g1.lara.train.trainer import PRESET_DEFAULTS, TrainError, TrainSettings, train

#: The options' defaults: those of TrainSettings, declared there only.
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainSettings)}


def _per_preset(key: str) -> str:
    return ", ".join(f"{name} {values[key]:g}" for name, values in PRESET_DEFAULTS.items())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", type=Path, required=True, help="LeRobot v3.0 dataset root")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps")
    p.add_argument("--batch-size", type=int,
                   help=f"samples per step and rank (default per preset: {_per_preset('batch_size')})")
    p.add_argument("--lr", type=float,
                   help=f"peak learning rate of AdamW (default per preset: {_per_preset('lr')})")
    p.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"],
                   help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--warmup-ratio", type=float, default=DEFAULTS["warmup_ratio"],
                   help="share of steps of linear warm-up (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed (default: %(default)s)")
    p.add_argument("--lam-offset", type=int, default=DEFAULTS["lam_offset"],
                   help="LAM future frame t+K (clamped at the episode end; default: %(default)s)")
    p.add_argument("--lam-encoder", help="ViT-MAE path or hub name (default: the preset's)")
    p.add_argument("--codebook-restart", type=int, default=DEFAULTS["codebook_restart"], metavar="N",
                   help="move the LAM codes that no latent chose in the last N steps onto latents of the batch "
                        "(0: never; default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=DEFAULTS["checkpoint_every"],
                   help="steps between checkpoints (0: only at the end; default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--num-workers", type=int, default=DEFAULTS["num_workers"],
                   help="data-loader worker processes (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lara-train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    lam = sub.add_parser("lam", help="stage 1: LAM pre-training (reconstruction only)")
    lam.add_argument("--preset", required=True, choices=tuple(PRESET_DEFAULTS))
    lam.add_argument("--video", type=Path, action="append", default=[], metavar="DIR",
                     help="more frames for the LAM, no labels needed: a LeRobot v3.0 dataset of action-free "
                          "video (e.g. `lara-teleop record --source explore`); repeatable")
    _common(lam)
    joint = sub.add_parser("joint", help="stages 2/3: LARA joint training / post-training")
    joint.add_argument("--preset", choices=tuple(PRESET_DEFAULTS),
                       help="model sizes (taken from --init when given)")
    joint.add_argument("--init", type=Path, help="policy bundle to start from (post-training)")
    joint.add_argument("--lam", type=Path, help="LAM to use: a `lara-train lam` output, a bundle "
                       "or a lam/ directory (default: the --init bundle's, else a fresh one)")
    joint.add_argument("--no-align", action="store_true", help="no LAM, no alignment: LARA DiT-only")
    joint.add_argument("--freeze-lam", action="store_true", help="the LAM is a fixed target (ablation)")
    joint.add_argument("--align-weight", type=float, default=DEFAULTS["align_weight"],
                       help="weight of the alignment loss (default: %(default)s)")
    joint.add_argument("--lam-weight", type=float, default=DEFAULTS["lam_weight"],
                       help="weight of the LAM loss (default: %(default)s)")
    joint.add_argument("--image-shift", type=int,
                       help=f"random-shift augmentation of the policy's image, pixels (default per preset: "
                            f"{_per_preset('image_shift')}; 0: none)")
    _common(joint)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    args["progress"] = not args.pop("no_progress")
    try:
        out = train(TrainSettings(**args))
    except (TrainError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"lara-train: error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        print(f"lara-train: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
