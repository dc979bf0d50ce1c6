"""LARA's alignment: the DiT's hidden state predicts the LAM's continuous latent motion.

The DiT block L-2 output at the last action token goes through a linear projection to
``num_queries * latent_dim`` (8 x 32 = 256) and is compared with the flattened continuous
latent z by cosine distance. z is deliberately NOT detached: the alignment gradient also trains
the LAM (that is what makes LARA joint). Freezing the LAM is the caller's choice
(``--freeze-lam``), done by switching off the LAM's gradients, not here.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class AlignmentHead(nn.Module):
    """Linear projection from the DiT width to the flattened LAM latent."""

    def __init__(self, width: int, latent_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, latent_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` [B, 1 + H, width] (block L-2 output) -> projection [B, latent_size]."""
        return self.proj(hidden[:, -1])


ALIGNMENT_FILE = "alignment.safetensors"


def save_alignment(head: AlignmentHead, directory: str | Path) -> Path:
    """Store the projection next to the LAM (``lam/alignment.safetensors``) so that
    post-training from a bundle continues the alignment instead of restarting it."""
    from safetensors.torch import save_file

    path = Path(directory) / ALIGNMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(path))
    return path


def load_alignment(head: AlignmentHead, directory: str | Path) -> None:
    """Load a saved projection into ``head``; a shape mismatch (other DiT width) is an error."""
    from safetensors.torch import load_file

    path = Path(directory) / ALIGNMENT_FILE
    state = load_file(str(path))
    expected = head.state_dict()
    for name, tensor in expected.items():
        if name not in state or state[name].shape != tensor.shape:
            got = tuple(state[name].shape) if name in state else "missing"
            raise ValueError(f"{path}: {name} is {got}, this policy needs {tuple(tensor.shape)}")
    head.load_state_dict(state)


def alignment_loss(projection: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos(projection, flatten(z))) over the batch."""
    return (1.0 - F.cosine_similarity(projection, z.flatten(1), dim=-1)).mean()
