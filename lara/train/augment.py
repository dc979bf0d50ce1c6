"""Training-time image augmentation.

Random shift (DrQ; Diffusion Policy's random crop): each image moves by up to ``max_shift``
pixels in x and y, its border replicated. With ~50 demonstrations per task a policy otherwise
memorises exact pixel positions; small shifts make it read where things are relative to each
other (the hand and the object), which is what closing the loop needs. Applied to the
preprocessed ``pixel_values`` (after resize and normalisation), so inference is untouched.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def random_shift(pixels: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, C, H, W]`` -> the same shape, image b translated by (dy_b, dx_b) in
    ``-max_shift..max_shift`` (integers, uniform), edges replicated. ``max_shift`` 0: unchanged."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return pixels
    b, _, h, w = pixels.shape
    padded = F.pad(pixels, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator, device=generator.device
                            if generator is not None else pixels.device).to(pixels.device)
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(offsets.tolist())])
