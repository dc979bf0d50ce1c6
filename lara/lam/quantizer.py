"""Vector quantiser of the LAM: nearest-code lookup, VQ-VAE losses, straight-through gradient."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Quantized:
    quantized: torch.Tensor  # [B, Q, D]: codes in the forward pass, gradient of z in the backward pass
    indices: torch.Tensor  # [B, Q] int64
    codebook_loss: torch.Tensor  # ||sg(z) - e||^2: moves the codes towards the encoder outputs
    commitment_loss: torch.Tensor  # ||z - sg(e)||^2 (unweighted): keeps z close to its code


class VectorQuantizer(nn.Module):
    """A codebook of ``size`` x ``dim`` with the straight-through estimator.

    The forward value of ``quantized`` is the chosen code; its gradient flows unchanged to z, so
    the encoder (M-Former) learns through the quantiser. ``counts`` accumulates how often each
    code was chosen during training, for the running codebook usage.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.codebook = nn.Embedding(size, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / size, 1.0 / size)
        self.register_buffer("counts", torch.zeros(size, dtype=torch.long))
        # Dead-code restart (off at 0): every ``restart_every`` training forwards, each code that no
        # latent chose in that window is moved onto a latent of the current batch.
        self.restart_every = 0
        self.restarted = 0                       # codes restarted so far (a diagnostic)
        self._calls = 0
        self.register_buffer("_window", torch.zeros(size, dtype=torch.long), persistent=False)

    @property
    def size(self) -> int:
        return self.codebook.num_embeddings

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = z.reshape(-1, z.shape[-1])
        codes = self.codebook.weight
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t()
                     + codes.pow(2).sum(1)[None, :])
        indices = distances.argmin(dim=1)
        chosen = F.embedding(indices, codes).view_as(z)
        codebook_loss = F.mse_loss(chosen, z.detach())
        commitment_loss = F.mse_loss(z, chosen.detach())
        quantized = z + (chosen - z).detach()
        if self.training:
            with torch.no_grad():
                hist = torch.bincount(indices, minlength=self.size)
                self.counts += hist
                if self.restart_every:
                    self._restart_dead(hist, flat)
        return Quantized(quantized, indices.view(z.shape[:-1]), codebook_loss, commitment_loss)

    @torch.no_grad()
    def _restart_dead(self, hist: torch.Tensor, flat: torch.Tensor) -> None:
        self._window += hist
        self._calls += 1
        if self._calls % self.restart_every:
            return
        dead = (self._window == 0).nonzero().flatten()
        self._window.zero_()
        if len(dead):
            picks = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)
            self.codebook.weight[dead] = flat[picks].detach()
            self.restarted += len(dead)

    @torch.no_grad()
    def init_from_data(self, z: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codes to ``size`` latents drawn from ``z`` (any shape ending in ``dim``), each
        drawn once while there are enough. A fresh LAM's z is on the scale of its encoder's
        output, far from the default init's ±1/size; from there the commitment term pulls every
        z into that tiny ball around the origin before the reconstruction can spread the codes,
        and the latent collapses (docs/POLICY.md, "What the latent carries"). Drawn from the data,
        the codebook starts where the latents are."""
        flat = z.detach().reshape(-1, self.codebook.embedding_dim)
        if flat.shape[0] == 0:
            raise ValueError("no latents to initialise the codebook from")
        order = torch.randperm(flat.shape[0], generator=generator, device="cpu").to(flat.device)
        picks = order.repeat((self.size + flat.shape[0] - 1) // flat.shape[0])[: self.size]
        self.codebook.weight.copy_(flat[picks])

    def usage(self, indices: torch.Tensor | None = None) -> dict[str, float]:
        """Codebook usage: active codes and perplexity of ``indices`` (a batch) and running counts."""
        out: dict[str, float] = {
            "codebook_size": float(self.size),
            "active_running": float((self.counts > 0).sum()),
        }
        if indices is not None:
            hist = torch.bincount(indices.reshape(-1), minlength=self.size).float()
            p = hist / hist.sum().clamp_min(1)
            out["active_batch"] = float((hist > 0).sum())
            out["perplexity_batch"] = float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))
        return out
