"""Which part of the LAM makes its latent collapse at a given preset (docs/POLICY.md, issue 16).

Trains three LAMs of one preset, from the same initial weights, on the same (frame t, frame t+k)
pairs, and prints the spread of z during training and the latent report at the end:

- ``vq``: the LAM as stage 1 trains it (reconstruction + codebook + commitment, straight-through);
- ``continuous``: the same model with the quantiser taken out: the decoder reads z itself;
- ``oracle``: the decoder reads a learnt projection of the true joint motion state[t+k] - state[t]
  instead of z (how much a motion code could help this decoder at all).

The reconstruction of each mode is measured on held-out pairs against copying frame t.

    python bench/lam_bottleneck.py --dataset runs/loop16/demos --video runs/loop16/video \
        [--pairs 1500] [--steps 600] [--preset tiny]
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lara_g1.lara.data.samples import LaraSampleDataset
from lara_g1.lara.lam import LamConfig, LatentActionModel
from lara_g1.lara.train.latent_report import format_report, joint_motion, latent_report

MODES = ("vq", "continuous", "oracle")


def load_pairs(roots: list[Path], per_source: int, offset: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"t": [], "tk": [], "motion": []}
    for root in roots:
        ds = LaraSampleDataset(root, horizon=1, lam_offset=offset)
        for i in np.sort(rng.choice(len(ds), size=min(per_source, len(ds)), replace=False)):
            row = ds[int(i)]
            out["t"].append(row["image"])
            out["tk"].append(row["future_image"])
            out["motion"].append(joint_motion(ds, int(i)))
    return {k: np.stack(v) for k, v in out.items()}


def decode(lam: LatentActionModel, mode: str, oracle: torch.nn.Module, x_t, x_tk, motion):
    """(the mode's training loss, the reconstruction, z or None). ``vq``'s loss is the LAM's own
    (reconstruction + codebook + commitment); the other two have no quantiser and train on reconstruction."""
    if mode == "vq":
        out = lam(x_t, x_tk)
        return out.loss, out.reconstruction, out.z
    if mode == "continuous":
        z = lam.encode(x_t, x_tk)
        tokens = z
    else:
        z = None
        tokens = oracle(motion).view(len(motion), lam.config.num_queries, lam.config.latent_dim)
    reconstruction = lam.decoder(x_t, lam.up_resampler(tokens))
    return F.mse_loss(reconstruction, x_tk), reconstruction, z


def train_mode(mode: str, base: LatentActionModel, pairs: dict, train_idx: np.ndarray, held_idx: np.ndarray,
               steps: int, lr: float, batch: int, seed: int) -> LatentActionModel:
    lam = copy.deepcopy(base)
    motion = torch.from_numpy(pairs["motion"]).float()
    motion = (motion - motion[train_idx].mean(0)) / (motion[train_idx].std(0) + 1e-3)
    oracle = torch.nn.Linear(motion.shape[1], lam.config.num_queries * lam.config.latent_dim)
    params = lam.trainable_parameters() + (list(oracle.parameters()) if mode == "oracle" else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)
    warmup = max(1, steps // 20)  # lara-train's 5 % warm-up
    g = torch.Generator().manual_seed(seed)
    frames_t, frames_tk = torch.from_numpy(pairs["t"]), torch.from_numpy(pairs["tk"])
    trace, t0 = [], time.perf_counter()
    lam.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        idx = torch.from_numpy(train_idx)[torch.randint(len(train_idx), (batch,), generator=g)]
        loss, _, z = decode(lam, mode, oracle, lam.preprocess(frames_t[idx]), lam.preprocess(frames_tk[idx]),
                            motion[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if z is not None and (step in (0, 10, 25, 50) or (step + 1) % max(1, steps // 6) == 0):
            flat = z.detach().flatten(1)
            trace.append(f"{step}:{float(flat.std(0).mean() / flat.abs().mean()):.3f}")
    lam.eval()
    with torch.no_grad():
        recon, copy_mse = [], []
        for k in range(0, len(held_idx), 64):
            idx = torch.from_numpy(held_idx[k:k + 64])
            x_t, x_tk = lam.preprocess(frames_t[idx]), lam.preprocess(frames_tk[idx])
            _, rec, _ = decode(lam, mode, oracle, x_t, x_tk, motion[idx])
            recon.append(F.mse_loss(rec, x_tk, reduction="none").flatten(1).mean(1))
            copy_mse.append(F.mse_loss(x_t, x_tk, reduction="none").flatten(1).mean(1))
    ratio = float(torch.cat(recon).mean() / torch.cat(copy_mse).mean())
    print(f"[{mode}] {steps} steps in {time.perf_counter() - t0:.0f} s; held-out reconstruction / copy-frame-t "
          f"{ratio:.3f}" + (f"; z spread ratio by step {' '.join(trace)}" if trace else ""), flush=True)
    return lam


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True, help="demonstrations (pairs, and the report's probes)")
    ap.add_argument("--video", type=Path, action="append", default=[], help="action-free video (more pairs)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--pairs", type=int, default=1500, help="pairs drawn from each dataset")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--offset", type=int, default=15, help="k (lara-train's --lam-offset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    pairs = load_pairs([args.dataset, *args.video], args.pairs, args.offset, args.seed)
    order = np.random.default_rng(args.seed).permutation(len(pairs["t"]))
    held = min(256, len(order) // 4)
    held_idx, train_idx = np.sort(order[:held]), np.sort(order[held:])
    print(f"{len(pairs['t'])} pairs ({len(train_idx)} train, {len(held_idx)} held out), k = {args.offset}, "
          f"loaded in {time.perf_counter() - t0:.0f} s", flush=True)
    base = LatentActionModel(LamConfig.from_preset(args.preset))
    with torch.no_grad():  # the codebook from the data, as a fresh LAM in lara-train
        idx = torch.from_numpy(train_idx[:256])
        z = base.encode(base.preprocess(torch.from_numpy(pairs["t"][idx])),
                        base.preprocess(torch.from_numpy(pairs["tk"][idx])))
        base.quantizer.init_from_data(z, torch.Generator().manual_seed(args.seed))
    report_data = LaraSampleDataset(args.dataset, horizon=1, lam_offset=args.offset)
    for mode in args.modes:
        lam = train_mode(mode, base, pairs, train_idx, held_idx, args.steps, args.lr, args.batch, args.seed)
        if mode == "oracle":
            continue
        lines = format_report(latent_report(lam, report_data)).splitlines()
        if mode == "continuous":  # the report's reconstruction runs the quantiser this mode took out
            lines = [line for line in lines if not line.lstrip().startswith("recon")]
        print("\n".join(lines).replace("latent report", f"[{mode}] latent report"), flush=True)


if __name__ == "__main__":
    main()
