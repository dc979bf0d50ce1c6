"""Flow matching in GR00T's convention.

Path: ``x_t = (1 - t) * noise + t * action`` (t = 0 is noise, t = 1 the action); velocity
target ``action - noise``. Training draws ``s ~ Beta(alpha, 1)`` and uses
``t = (noise_s - s) / noise_s`` (alpha 1.5, noise_s 0.999), so t near 0 (noisy) is sampled
most. The network sees t as a discrete bucket ``floor(t * 1000)``. Inference integrates
with Euler from the given noise: for step k of n, bucket ``k * 1000 / n`` (0, 250, 500, 750
for 4 steps) and ``a += v / n``.
"""
from __future__ import annotations

import torch


def sample_flow_time(batch: int, alpha: float = 1.5, noise_s: float = 0.999,
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``t [batch]`` float32. Beta(alpha, 1) by inverse CDF (its CDF is s**alpha), so a
    ``torch.Generator`` makes it reproducible."""
    u = torch.rand(batch, generator=generator, device=device)
    s = u.pow(1.0 / alpha)
    return (noise_s - s) / noise_s


def time_to_bucket(t: torch.Tensor, num_buckets: int = 1000) -> torch.Tensor:
    """Discretise ``t`` to ``floor(t * num_buckets)`` clamped to ``[0, num_buckets - 1]`` (int64)."""
    return torch.clamp(torch.floor(t * num_buckets), 0, num_buckets - 1).to(torch.int64)


def euler_buckets(steps: int, num_buckets: int = 1000) -> list[int]:
    """The buckets at which the sampler evaluates the velocity: 0, 250, 500, 750 for 4 steps."""
    return [k * num_buckets // steps for k in range(steps)]


def interpolate(noise: torch.Tensor, actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t`` for per-sample ``t [B]``."""
    t = t.reshape(-1, *([1] * (actions.dim() - 1)))
    return (1 - t) * noise + t * actions
