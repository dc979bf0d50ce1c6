"""What the LAM's latent carries (issue 16, item 2): codebook use, spread of z, reconstruction
against the copy-frame-t baseline, and held-out linear probes to the true joint motion.

Over ``samples`` items of a :class:`~lara_g1.lara.data.samples.LaraSampleDataset` (frame t, frame
t+k with k = the dataset's ``lam_offset``, clamped to the episode's end) the LAM (either variant:
:class:`~lara_g1.lara.lam.model.LatentActionModel` or
:class:`~lara_g1.lara.lam.moto.MotoLatentActionModel`) is run in eval mode, without gradients and
without touching the quantiser's running counts. The numbers (docs/POLICY.md, "What the latent
carries"):

- ``codes_active``, ``perplexity``: distinct code indices over all N x Q tokens, and exp of the
  entropy of their distribution (1 = one code, ``codebook_size`` = all codes equally used);
- ``z_spread``: the mean over the Q*D dimensions of flattened z of its std across samples;
  ``z_abs_mean``: mean |z|; ``z_spread_ratio`` = spread / mean |z| (a near-constant latent is ~0);
- ``recon_mse``: MSE(reconstruction, frame t+k) in the LAM's normalised pixel space;
  ``copy_mse``: MSE(frame t, frame t+k), the predict-nothing baseline; ``recon_ratio`` = recon /
  copy (< 1: the LAM adds something to frame t);
- ``probe_r2_z``: ridge regression (closed form, standardised inputs, fixed ``ridge``) from
  flattened z to the joint motion state[t+k] - state[t], R² on held-out samples only;
  ``probe_r2_frame``: the same probe from the frozen encoder's patch features of frame t alone
  (every patch, flattened: where things are, which mean-pooling would throw away);
  ``probe_r2_frame_z``: from both. In scripted demonstrations frame t alone predicts much of the
  motion (the task's phase shows in the picture), so z carries motion beyond frame t when
  ``probe_r2_frame_z`` is clearly above ``probe_r2_frame``.

The held-out split is by episode where the samples cover at least two episodes (neighbouring
frames of one episode are near-duplicates, so a per-sample split would leak), else by sample.

``python -m lara_g1.lara.train.latent_report --lam DIR --dataset DIR`` prints the report.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_SAMPLES = 256
DEFAULT_RIDGE = 1e-2  # per-sample penalty: minimise mean squared error + ridge * |w|^2
BATCH = 32


@dataclass
class LatentSamples:
    """What the report is computed from, one row per sample."""

    z: np.ndarray  # [N, Q*D] flattened continuous latent
    indices: np.ndarray  # [N, Q] code ids
    frame_features: np.ndarray  # [N, P*E] float32: the frozen encoder's patch features of frame t alone
    motion: np.ndarray  # [N, J] state[t+k] - state[t]
    episodes: np.ndarray  # [N] episode index (the probe's split groups)
    recon_mse: np.ndarray  # [N] per-sample MSE(reconstruction, frame t+k)
    copy_mse: np.ndarray  # [N] per-sample MSE(frame t, frame t+k)
    codebook_size: int


def joint_motion(dataset, item: int) -> np.ndarray:
    """The probes' target for item ``item``: state[min(t + lam_offset, T - 1)] - state[t] of its episode."""
    pos, t = dataset.locate(item)
    states = dataset._states[pos]
    future = states[min(t + dataset.lam_offset, int(dataset._lengths[pos]) - 1)]
    return np.asarray(future, dtype=np.float64) - np.asarray(states[t], dtype=np.float64)


def choose_items(n_items: int, samples: int, seed: int) -> np.ndarray:
    """``samples`` distinct item indices (all when there are fewer), sorted for the frame cache."""
    if samples >= n_items:
        return np.arange(n_items)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, size=samples, replace=False))


@torch.no_grad()
def collect(lam, dataset, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> LatentSamples:
    """Run ``lam`` over ``samples`` items of ``dataset``; restores the LAM's train/eval mode."""
    items = choose_items(len(dataset), samples, seed)
    was_training = lam.training
    lam.eval()
    out: dict[str, list] = {k: [] for k in ("z", "indices", "frame", "recon", "copy", "motion", "episode")}
    try:
        for start in range(0, len(items), BATCH):
            rows = [dataset[int(i)] for i in items[start:start + BATCH]]
            frame_t = lam.preprocess(np.stack([r["image"] for r in rows]))
            frame_tk = lam.preprocess(np.stack([r["future_image"] for r in rows]))
            result = lam(frame_t, frame_tk)
            features_t = lam.encode_frames(frame_t)  # [B, 1 + P, E], frozen encoder, frame t only
            out["z"].append(result.z.flatten(1).float().cpu().numpy())
            out["indices"].append(result.indices.cpu().numpy())
            out["frame"].append(features_t[:, 1:].flatten(1).float().cpu().numpy())   # every patch, no CLS
            out["recon"].append(F.mse_loss(result.reconstruction, frame_tk, reduction="none")
                                .flatten(1).mean(1).cpu().numpy())
            out["copy"].append(F.mse_loss(frame_t, frame_tk, reduction="none").flatten(1).mean(1).cpu().numpy())
            for item, row in zip(items[start:start + BATCH], rows):
                out["motion"].append(joint_motion(dataset, int(item)))
                out["episode"].append(int(row["episode_index"]))
    finally:
        lam.train(was_training)
    return LatentSamples(
        z=np.concatenate(out["z"]).astype(np.float64), indices=np.concatenate(out["indices"]),
        frame_features=np.concatenate(out["frame"]),
        motion=np.stack(out["motion"]), episodes=np.asarray(out["episode"]),
        recon_mse=np.concatenate(out["recon"]).astype(np.float64),
        copy_mse=np.concatenate(out["copy"]).astype(np.float64),
        codebook_size=int(lam.quantizer.size))


def split_heldout(episodes: np.ndarray, heldout: float, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(train mask, held-out mask, "episode" | "sample"). By episode: whole episodes, in a seeded
    order, are held out until they hold ``heldout`` of the samples (at least one episode, never all)."""
    n = len(episodes)
    if n < 4:
        raise ValueError(f"the probe needs at least 4 samples, got {n}")
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    groups = np.unique(episodes)
    if len(groups) >= 2:
        for g in rng.permutation(groups)[:-1]:
            held |= episodes == g
            if held.sum() >= heldout * n:
                break
        return ~held, held, "episode"
    k = min(n - 2, max(2, int(round(heldout * n))))
    held[rng.permutation(n)[:k]] = True
    return ~held, held, "sample"


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-8 * max(1.0, float(np.abs(mean).max(initial=0.0))), std, np.inf)  # constant: 0
    return [(x - mean) / std for x in (train, *others)]


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float = DEFAULT_RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge (intercept unpenalised): minimises mean |x w + b - y|^2 + ridge |w|^2."""
    n, d = x.shape
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    lam = ridge * n
    if d <= n:
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(d), xc.T @ yc)
    else:  # dual form: the same solution through the n x n system
        w = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(n), yc)
    return w, ym - xm @ w


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Pooled R² over all output dimensions: 1 - SSE / SST around ``y``'s own mean (the joints
    that move most weigh most; joints that never move add nothing to either sum)."""
    sst = float(((y - y.mean(0)) ** 2).sum())
    sse = float(((y - pred) ** 2).sum())
    if sst <= 0:
        return 0.0 if sse <= 0 else -math.inf
    return 1.0 - sse / sst


def probe_r2(features: np.ndarray, targets: np.ndarray, train: np.ndarray, heldout: np.ndarray,
             ridge: float = DEFAULT_RIDGE) -> float:
    """R² on the ``heldout`` rows of a ridge probe fitted on the ``train`` rows only."""
    x_train, x_held = _standardise(features[train], features[heldout])
    w, b = ridge_fit(x_train, targets[train], ridge)
    return r2_score(targets[heldout], x_held @ w + b)


def summarise(s: LatentSamples, heldout: float = 0.25, seed: int = 0, ridge: float = DEFAULT_RIDGE) -> dict[str, Any]:
    """The report's numbers (plain ints and floats; ``recon_ratio`` None when frames never change)."""
    n = len(s.z)
    counts = np.bincount(s.indices.reshape(-1), minlength=s.codebook_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    spread = float(s.z.std(0).mean())
    abs_mean = float(np.abs(s.z).mean())
    recon, copy = float(s.recon_mse.mean()), float(s.copy_mse.mean())
    train, held, how = split_heldout(s.episodes, heldout, seed)
    return {
        "samples": int(n),
        "episodes": int(len(np.unique(s.episodes))),
        "codebook_size": int(s.codebook_size),
        "tokens": int(s.indices.size),
        "codes_active": int((counts > 0).sum()),
        "perplexity": float(np.exp(-(p * np.log(p)).sum())),
        "z_dim": int(s.z.shape[1]),
        "z_spread": spread,
        "z_abs_mean": abs_mean,
        "z_spread_ratio": spread / abs_mean if abs_mean > 0 else 0.0,
        "recon_mse": recon,
        "copy_mse": copy,
        "recon_ratio": recon / copy if copy > 0 else None,
        "motion_dim": int(s.motion.shape[1]),
        "motion_abs_mean": float(np.abs(s.motion).mean()),
        "probe_split": how,
        "probe_train": int(train.sum()),
        "probe_heldout": int(held.sum()),
        "probe_ridge": float(ridge),
        "probe_r2_z": probe_r2(s.z, s.motion, train, held, ridge),
        "probe_r2_frame": probe_r2(s.frame_features, s.motion, train, held, ridge),
        "probe_r2_frame_z": probe_r2(np.concatenate([s.frame_features, s.z], axis=1), s.motion, train, held, ridge),
    }


def latent_report(lam, dataset, samples: int = DEFAULT_SAMPLES, seed: int = 0, heldout: float = 0.25,
                  ridge: float = DEFAULT_RIDGE) -> dict[str, Any]:
    """The report over ``samples`` items of ``dataset`` (a LaraSampleDataset; k = its lam_offset)."""
    if not 0 < heldout < 1:
        raise ValueError(f"heldout must be in (0, 1), got {heldout}")
    report = summarise(collect(lam, dataset, samples, seed), heldout, seed, ridge)
    report["lam_offset"] = int(dataset.lam_offset)
    return report


def with_latent(s: LatentSamples, z: np.ndarray) -> LatentSamples:
    """``s`` with another latent (tests and what-ifs: the true motion, a constant)."""
    return replace(s, z=np.asarray(z, dtype=np.float64).reshape(len(s.z), -1))


def _f(x: float | None, fmt: str = ".4g") -> str:
    return "n/a" if x is None else format(x, fmt)


def format_report(r: dict[str, Any]) -> str:
    """One readable block."""
    return "\n".join([
        f"latent report: {r['samples']} samples from {r['episodes']} episodes, k = {r.get('lam_offset', '?')} frames",
        f"  codebook   {r['codes_active']} of {r['codebook_size']} codes active over {r['tokens']} tokens, "
        f"perplexity {_f(r['perplexity'], '.2f')}",
        f"  z spread   mean std across samples {_f(r['z_spread'])}, mean |z| {_f(r['z_abs_mean'])}, "
        f"ratio {_f(r['z_spread_ratio'], '.3f')}",
        f"  recon      LAM MSE {_f(r['recon_mse'])} vs copy-frame-t {_f(r['copy_mse'])}, "
        f"ratio {_f(r['recon_ratio'], '.3f')}",
        f"  probe R²   z -> joint motion {_f(r['probe_r2_z'], '.3f')}, frame t only "
        f"{_f(r['probe_r2_frame'], '.3f')}, frame t + z {_f(r.get('probe_r2_frame_z'), '.3f')} (held out by {r['probe_split']}: {r['probe_train']} train, "
        f"{r['probe_heldout']} held out)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lara_g1.lara.train.latent_report",
                                     description="What the LAM's latent carries (docs/POLICY.md).")
    parser.add_argument("--lam", type=Path, required=True,
                        help="a LAM directory, or a directory holding lam/ (bundle, lara-train out)")
    parser.add_argument("--dataset", type=Path, required=True, help="a LeRobot v3.0 dataset")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--lam-offset", type=int, default=15, help="k: frame t+k (default 15, lara-train's)")
    parser.add_argument("--camera", default=None, help="default: the dataset's first camera")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout", type=float, default=0.25)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from lara_g1.lara.data.lerobot import LeRobotDataset
    from lara_g1.lara.data.samples import LaraSampleDataset
    from lara_g1.lara.lam import load_lam

    lam_dir = args.lam / "lam" if (args.lam / "lam").is_dir() else args.lam
    if args.samples < 4 or args.lam_offset < 1:
        parser.error("--samples must be >= 4 and --lam-offset >= 1")
    lam = load_lam(lam_dir)
    camera = args.camera or LeRobotDataset(args.dataset).cameras[0]
    dataset = LaraSampleDataset(args.dataset, horizon=1, lam_offset=args.lam_offset, camera=camera)
    report = latent_report(lam, dataset, samples=args.samples, seed=args.seed, heldout=args.heldout)
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
