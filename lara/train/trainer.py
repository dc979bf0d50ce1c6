"""The training loop behind ``lara-train lam`` (stage 1) and ``lara-train joint`` (stages 2/3).

One run: build the modules (fresh from a preset, or from an ``--init`` bundle and a ``--lam``),
read the LeRobot dataset through :class:`lara_g1.lara.data.samples.LaraSampleDataset`, optimise the
:class:`~lara_g1.lara.train.objective.JointObjective` with AdamW and a cosine schedule with warm-up,
log every step's loss terms (``train_log.jsonl``), checkpoint periodically, and finally write
the policy bundle (joint) or the LAM directory (lam) into ``--out``.

Runs under ``torchrun`` use DDP; rank 0 logs, checkpoints and writes the outputs.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from lara_g1.core.errors import ConfigError
from lara_g1.lara.lam import LamConfig, LatentActionModel, load_lam, save_lam
from lara_g1.lara.train import distributed
from lara_g1.lara.train.alignment import ALIGNMENT_FILE, AlignmentHead, load_alignment, save_alignment
from lara_g1.lara.train.augment import random_shift
from lara_g1.lara.train.batches import BatchCollator, StepBatchSampler, to_device
from lara_g1.lara.train.checkpoint import list_checkpoints, load_checkpoint, restore_rng_state, save_checkpoint
from lara_g1.lara.train.objective import JointObjective, LossWeights
from lara_g1.lara.train.optim import build_optimizer, build_scheduler

if TYPE_CHECKING:
    from lara_g1.lara.model.config import PolicyConfig

LOG_NAME = "train_log.jsonl"
SUMMARY_NAME = "train_summary.json"
LAM_DIR = "lam"

#: Per-preset defaults of batch size and learning rate. The paper's 1e-4 is for its sizes; the
#: CPU-sized ``tiny`` preset trains in a few hundred steps and takes a larger step.
PRESET_DEFAULTS = {
    "tiny": {"batch_size": 16, "lr": 1e-3, "image_shift": 8},
    "small": {"batch_size": 32, "lr": 1e-4, "image_shift": 8},
    "paper": {"batch_size": 32, "lr": 1e-4, "image_shift": 8},
}


class TrainError(ConfigError):
    """Settings or inputs a run cannot start from; the message says what to change."""


@dataclass
class TrainSettings:
    stage: str  # "lam" (LAM reconstruction only) or "joint"
    dataset: Path
    out: Path
    steps: int
    # lam stage: more frames, no labels needed (action-free video, e.g. `lara-teleop record --source
    # explore`); only their frames are used, the latent report still runs on ``dataset``
    video: list[Path] = dataclasses.field(default_factory=list)
    preset: str | None = None  # required unless --init gives the config
    init: Path | None = None  # joint: start from this bundle (post-training)
    lam: Path | None = None  # a LAM directory, or a directory holding lam/ (bundle, lam-stage out)
    lam_encoder: str | None = None  # override the preset's ViT-MAE path / hub name
    no_align: bool = False
    freeze_lam: bool = False
    batch_size: int | None = None
    lr: float | None = None
    image_shift: int | None = None  # random-shift augmentation, pixels (None: the preset's)
    weight_decay: float = 1e-5
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    seed: int = 0
    lam_offset: int = 15
    align_weight: float = 0.01
    lam_weight: float = 0.01
    codebook_restart: int = 0  # dead-code restart window in steps (0: off); see VectorQuantizer
    checkpoint_every: int = 500
    resume: bool = False
    num_workers: int = 0
    device: str | None = None
    progress: bool = True
    latent_samples: int = 256  # end-of-run latent report (latent_report.py) over this many samples; 0: none

    def __post_init__(self) -> None:
        self.dataset, self.out = Path(self.dataset), Path(self.out)
        self.video = [Path(v) for v in (self.video or [])]
        self.init = Path(self.init) if self.init else None
        self.lam = Path(self.lam) if self.lam else None
        if self.stage not in ("lam", "joint"):
            raise TrainError(f"stage must be 'lam' or 'joint', got {self.stage!r}")
        if self.steps < 1:
            raise TrainError(f"--steps must be >= 1, got {self.steps}")
        if self.preset is None and self.init is None:
            raise TrainError("give --preset (tiny, small, paper) or an --init bundle")
        if self.preset is not None and self.preset not in PRESET_DEFAULTS:
            raise TrainError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESET_DEFAULTS)}")
        if self.stage == "lam" and (self.init or self.no_align or self.freeze_lam):
            raise TrainError("--init, --no-align and --freeze-lam belong to the joint stage")
        if self.video and self.stage != "lam":
            raise TrainError("--video (action-free frames) belongs to the lam stage: the joint stage "
                             "learns actions, and video has none")
        for path in self.video:
            if not path.is_dir():
                raise TrainError(f"--video {path} is not a directory")
        if self.no_align and (self.freeze_lam or self.lam):
            raise TrainError("--no-align trains the DiT alone: it takes no LAM (--lam, --freeze-lam)")
        if self.lam_encoder and self.lam:
            raise TrainError("--lam-encoder builds a new LAM; it cannot be combined with --lam")
        if self.lam_offset < 1:
            raise TrainError(f"--lam-offset must be >= 1 frame, got {self.lam_offset}")
        for name in ("lr", "batch_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise TrainError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.image_shift is not None and self.image_shift < 0:
            raise TrainError(f"--image-shift must be >= 0 pixels, got {self.image_shift}")
        if self.checkpoint_every < 0 or self.num_workers < 0:
            raise TrainError("--checkpoint-every and --num-workers must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise TrainError(f"warmup ratio must be in [0, 1), got {self.warmup_ratio}")

    def resume_key(self) -> dict[str, Any]:
        """The settings a checkpoint must agree with to be resumed."""
        keys = ("stage", "preset", "steps", "video", "no_align", "freeze_lam", "batch_size", "lr",
                "image_shift", "weight_decay", "warmup_ratio", "max_grad_norm", "seed", "lam_offset",
                "align_weight", "lam_weight", "codebook_restart")
        key = {k: getattr(self, k) for k in keys}
        key["video"] = [str(v) for v in self.video]
        return key


def _resolve_lam_dir(path: Path) -> Path:
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file() \
            and not (path / LAM_DIR).is_dir():
        return path
    if (path / LAM_DIR).is_dir():
        return path / LAM_DIR
    raise TrainError(f"--lam {path}: neither a LAM directory nor a directory holding {LAM_DIR}/")


@dataclass
class _Modules:
    config: PolicyConfig
    policy: nn.Module | None
    lam: LatentActionModel | None
    align: AlignmentHead | None
    tokenizer: Any = None  # the --init bundle's transformers tokenizer (Eagle backbone)
    lam_fresh: bool = False  # a new LAM (no --lam, no --init LAM): its codebook starts from the data


def _build_modules(s: TrainSettings) -> _Modules:
    from lara_g1.lara.model.config import PolicyConfig

    init_bundle = None
    if s.init is not None:
        from lara_g1.lara.bundle import load_bundle

        init_bundle = load_bundle(s.init)
        config = init_bundle.config
        if s.preset is not None and s.preset != config.preset:
            raise TrainError(f"--preset {s.preset} but the --init bundle is preset {config.preset}")
        s.preset = config.preset
    else:
        config = PolicyConfig.from_preset(s.preset)
    defaults = PRESET_DEFAULTS.get(s.preset, PRESET_DEFAULTS["small"])
    if s.batch_size is None:
        s.batch_size = defaults["batch_size"]
    if s.lr is None:
        s.lr = defaults["lr"]
    if s.image_shift is None:
        s.image_shift = defaults["image_shift"]

    lam = None
    lam_source = s.lam and _resolve_lam_dir(s.lam)
    if lam_source is None and init_bundle is not None and not s.no_align \
            and (s.init / LAM_DIR).is_dir():
        lam_source = s.init / LAM_DIR
    if lam_source is not None:
        lam = load_lam(lam_source)
    elif s.freeze_lam:
        raise TrainError("--freeze-lam needs a trained LAM: pass --lam (a `lara-train lam` output) "
                         "or an --init bundle that holds lam/")
    elif not s.no_align:
        if s.preset not in PRESET_DEFAULTS:
            raise TrainError(f"no LAM preset for policy preset {s.preset!r}; pass --lam")
        overrides = {"encoder": s.lam_encoder} if s.lam_encoder else {}
        lam = LatentActionModel(LamConfig.from_preset(s.preset, **overrides))

    tokenizer = init_bundle.tokenizer if init_bundle is not None else None
    fresh = lam is not None and lam_source is None
    if s.stage == "lam":
        return _Modules(config, None, lam, None, tokenizer, fresh)

    policy = init_bundle.policy if init_bundle is not None else _new_policy(config)
    align = None
    if not s.no_align:
        align = AlignmentHead(config.width, lam.config.latent_size)
        if lam_source is not None and (lam_source / ALIGNMENT_FILE).is_file():
            load_alignment(align, lam_source)
    return _Modules(config, policy, lam, align, tokenizer, fresh)


def _new_policy(config) -> nn.Module:
    from lara_g1.lara.model.policy import LaraPolicy

    return LaraPolicy(config)


CODEBOOK_INIT_SAMPLES = 256


@torch.no_grad()
def _init_codebook(lam: LatentActionModel, samples, camera: str, seed: int) -> None:
    """A fresh LAM's codebook from the latents of ``CODEBOOK_INIT_SAMPLES`` training samples
    (drawn with ``seed``: every rank draws the same, so DDP starts in step)."""
    rng = np.random.default_rng([seed, 0xC0DE])
    items = rng.choice(len(samples), size=min(CODEBOOK_INIT_SAMPLES, len(samples)), replace=False)
    batch = BatchCollator(None, camera)([samples[int(i)] for i in items])
    was_training = lam.training
    lam.eval()
    z = torch.cat([lam.encode(lam.preprocess(batch["image"][k:k + 64]),
                              lam.preprocess(batch["future_image"][k:k + 64]))
                   for k in range(0, len(items), 64)])
    lam.train(was_training)
    lam.quantizer.init_from_data(z, torch.Generator().manual_seed(seed))


def _ddp(module: nn.Module, ctx: distributed.DistContext) -> nn.Module:
    """DDP without per-forward buffer broadcasts: the buffers (LAM usage counters) are
    rank-local statistics; parameters and buffers are still synced once at start-up."""
    ddp = nn.parallel.DistributedDataParallel
    no_forward_sync = ({"forward_sync_buffers": False}
                       if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
                       else {"broadcast_buffers": False})
    return ddp(module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
               **no_forward_sync)


def _step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The flow noise of (seed, rank, step): resumed runs draw exactly the same noise."""
    mixed = int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(mixed)


class _Log:
    """``train_log.jsonl``: one JSON object per step (rank 0 only). On resume, lines past the
    checkpoint are dropped, so the file always describes one consistent run."""

    def __init__(self, path: Path, start_step: int) -> None:
        self.path = path
        kept = []
        if path.exists() and start_step > 0:
            for line in path.read_text().splitlines():
                if line.strip() and json.loads(line).get("step", math.inf) < start_step:
                    kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))
        self.file = open(path, "a")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _count(module: nn.Module | None, trainable: bool = False) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def parameter_report(m: _Modules) -> str:
    """One line: the trainable parameters and what is frozen (the backbone, a frozen LAM)."""
    policy = m.policy
    parts = []
    if policy is not None:
        backbone = _count(policy.backbone)
        frozen = backbone - _count(policy.backbone, trainable=True)
        parts.append(f"policy {_count(policy, True):,}" + (f" (backbone frozen: {frozen:,} not trained)"
                                                            if frozen else ""))
    if m.lam is not None:
        parts.append(f"LAM {_count(m.lam, True):,} of {_count(m.lam):,}")
    if m.align is not None:
        parts.append(f"alignment {_count(m.align, True):,}")
    total = sum(_count(x, True) for x in (policy, m.lam, m.align))
    return f"{total:,} trainable parameters: " + ", ".join(parts)


def train(settings: TrainSettings) -> Path:
    """Run one training stage; returns ``settings.out`` (the bundle or LAM directory)."""
    s = settings
    ctx = distributed.setup(s.device)
    try:
        return _train(s, ctx)
    finally:
        distributed.teardown()


def _train(s: TrainSettings, ctx: distributed.DistContext) -> Path:
    from lara_g1.lara.data.samples import LaraSampleDataset
    from lara_g1.lara.processing import FeatureStats, NormStats, Preprocessor

    if not s.dataset.is_dir():
        raise TrainError(f"--dataset {s.dataset} is not a directory")
    existing = list_checkpoints(s.out)
    if existing and not s.resume:
        raise TrainError(f"{s.out} already holds checkpoints of a run; pass --resume to continue "
                         f"it or choose another --out")
    torch.manual_seed(s.seed)  # the same fresh weights on every rank (DDP also broadcasts them)
    m = _build_modules(s)
    camera = m.config.cameras[0]
    dataset = LaraSampleDataset(s.dataset, horizon=m.config.horizon, lam_offset=s.lam_offset,
                                camera=camera, frame_cache_bytes=None)
    videos = [LaraSampleDataset(v, horizon=m.config.horizon, lam_offset=s.lam_offset, camera=camera,
                                frame_cache_bytes=None) for v in s.video]
    samples = torch.utils.data.ConcatDataset([dataset, *videos]) if videos else dataset
    frames = {"dataset": len(dataset), "video": sum(len(v) for v in videos)}
    if ctx.is_main and m.lam is not None:
        print(f"lara-train: the LAM sees {len(samples):,} frames ({frames['dataset']:,} of {s.dataset}"
              + (f", {frames['video']:,} of action-free video" if s.video else "") + ")", flush=True)
    preprocessor = None
    stats = None
    if m.policy is not None:
        stats = NormStats.from_dict(dataset.stats, m.policy.embodiment.dim)
        # relative action groups (GR00T N1.6): per-step stats of a[t + k] - s[t] over the training chunks
        # (a group the embodiment lacks is left to the Preprocessor, which names it)
        groups = {g.name: g for g in m.policy.embodiment.groups}
        stats.relative = {name: FeatureStats.from_dict(dataset.relative_action_stats(groups[name].slice),
                                                       groups[name].size, f"relative/{name}", steps=m.config.horizon)
                          for name in m.config.relative_action_groups if name in groups}
        preprocessor = Preprocessor(m.config, stats, m.tokenizer)

    objective = JointObjective(m.policy, m.lam, m.align,
                               LossWeights(align=s.align_weight, lam=s.lam_weight),
                               freeze_lam=s.freeze_lam).to(ctx.device)
    optimizer = build_optimizer(objective, s.lr, s.weight_decay)
    scheduler = build_scheduler(optimizer, s.steps, s.warmup_ratio)
    trainable = [p for p in objective.parameters() if p.requires_grad]
    if ctx.is_main:
        print(f"lara-train: {parameter_report(m)}", flush=True)

    start = 0
    if s.resume and existing:
        payload = load_checkpoint(existing[-1], s.resume_key(), map_location=ctx.device)
        objective.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        restore_rng_state(payload["rng"])
        start = payload["step"]

    if m.lam is not None and not s.freeze_lam:
        m.lam.quantizer.restart_every = s.codebook_restart
    if m.lam_fresh and start == 0:
        _init_codebook(m.lam, samples, camera, s.seed)  # preprocess puts frames on the LAM's device

    model: nn.Module = objective
    if ctx.distributed:
        model = _ddp(objective, ctx)

    sampler = StepBatchSampler(len(samples), s.batch_size, s.seed, start, s.steps,
                               rank=ctx.rank, world_size=ctx.world_size)
    loader = torch.utils.data.DataLoader(
        samples, batch_sampler=sampler, collate_fn=BatchCollator(preprocessor, camera),
        num_workers=s.num_workers, pin_memory=ctx.device.type == "cuda")

    s.out.mkdir(parents=True, exist_ok=True)
    log = _Log(s.out / LOG_NAME, start) if ctx.is_main else None
    bar = None
    if ctx.is_main and s.progress:
        from tqdm import tqdm

        bar = tqdm(total=s.steps, initial=start, desc=f"lara-train {s.stage}", dynamic_ncols=True)

    objective.train()
    t0 = time.perf_counter()
    try:
        for step, batch in enumerate(loader, start=start):
            batch = to_device(batch, ctx.device)
            generator = _step_generator(s.seed, ctx.rank, step, ctx.device)
            if "pixel_values" in batch:
                batch["pixel_values"] = random_shift(batch["pixel_values"], s.image_shift, generator)
            terms = model(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, s.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            if ctx.is_main:
                record = {"step": step, "lr": lr, "grad_norm": float(grad_norm)}
                record.update({k: float(v.detach()) for k, v in terms.items()})
                if m.lam is not None:
                    record["codes_active_running"] = int((m.lam.quantizer.counts > 0).sum())
                record["elapsed_s"] = round(time.perf_counter() - t0, 3)
                log.write(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{record[k]:.4g}" for k in
                                     ("loss", "flow", "align", "lam") if k in record})
            done = step + 1
            if ctx.is_main and s.checkpoint_every and done % s.checkpoint_every == 0 \
                    and done < s.steps:
                save_checkpoint(s.out, done, objective, optimizer, scheduler, s.resume_key())
        elapsed = time.perf_counter() - t0
        if ctx.is_main and start < s.steps:
            save_checkpoint(s.out, s.steps, objective, optimizer, scheduler, s.resume_key())
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()

    if ctx.is_main:
        _write_outputs(s, m, stats, dataset.instructions, steps_run=s.steps - start,
                       elapsed=elapsed, dataset=dataset, frames=frames)
    ctx.barrier()
    return s.out


def _latent_section(s: TrainSettings, m: _Modules, dataset) -> dict[str, Any] | None:
    """The end-of-run latent report (docs/POLICY.md, "What the latent carries"), printed; None
    without a LAM or with ``latent_samples`` 0. A failure is reported, never fatal: the outputs
    are already written."""
    if m.lam is None or dataset is None or s.latent_samples <= 0:
        return None
    from lara_g1.lara.train.latent_report import format_report, latent_report

    try:
        report = latent_report(m.lam, dataset, samples=s.latent_samples, seed=s.seed)
    except Exception as e:  # noqa: BLE001 - a diagnostic must not lose a finished run
        print(f"lara-train: latent report failed: {type(e).__name__}: {e}", flush=True)
        return {"error": f"{type(e).__name__}: {e}"}
    print(format_report(report), flush=True)
    return report


def _write_outputs(s: TrainSettings, m: _Modules, stats, instructions: list[str], steps_run: int,
                   elapsed: float, dataset=None, frames: dict[str, int] | None = None) -> None:
    summary = {
        "stage": s.stage,
        "settings": {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "video" else v)
                     for k, v in dataclasses.asdict(s).items()},
        "parameters": {"policy": _count(m.policy), "policy_trainable": _count(m.policy, True),
                       "lam": _count(m.lam), "lam_trainable": _count(m.lam, True),
                       "alignment": _count(m.align)},
        "steps_run": steps_run,
        "frames": frames,
        "steps_per_s": steps_run / elapsed if elapsed > 0 else None,
    }
    records = [json.loads(line) for line in (s.out / LOG_NAME).read_text().splitlines() if line]
    if records:
        summary["first"], summary["last"] = records[0], records[-1]
    if m.policy is not None:
        from lara_g1.lara.bundle import save_bundle

        m.policy.eval()
        save_bundle(s.out, m.policy, m.config, stats, lam=m.lam, instructions=instructions, tokenizer=m.tokenizer,
                    extra={"training": {k: summary[k] for k in ("stage", "settings", "parameters")}})
    elif m.lam is not None:
        save_lam(m.lam, s.out / LAM_DIR)
    if m.align is not None:
        save_alignment(m.align, s.out / LAM_DIR)
    latent = _latent_section(s, m, dataset)
    if latent is not None:
        summary["latent"] = latent
    (s.out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2))
