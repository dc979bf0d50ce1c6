"""The training objective: flow matching + alignment + LAM, as one module (one DDP wrapper).

Stage 1 (``lam``): the LAM alone, reconstruction loss (pixel MSE + codebook + commitment).
Stages 2/3 (``joint``): total = flow MSE + w_align * alignment + w_lam * LAM, with the switches
of the paper's comparisons:

- ``no_align`` ("LARA DiT-only"): the policy alone; no LAM, no alignment term.
- ``freeze_lam``: the LAM runs without gradient (its z is a fixed target) and its loss is
  reported but not trained; the alignment still trains the DiT and the projection.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lara_g1.lara.lam import LatentActionModel
from lara_g1.lara.train.alignment import AlignmentHead, alignment_loss


@dataclass(frozen=True)
class LossWeights:
    align: float = 0.01
    lam: float = 0.01


class JointObjective(nn.Module):
    """Holds the trained modules; ``forward(batch)`` returns the loss terms and ``loss``."""

    def __init__(self, policy: nn.Module | None, lam: LatentActionModel | None,
                 align: AlignmentHead | None, weights: LossWeights = LossWeights(),
                 freeze_lam: bool = False) -> None:
        super().__init__()
        if policy is None and lam is None:
            raise ValueError("nothing to train: neither a policy nor a LAM")
        if align is not None and (policy is None or lam is None):
            raise ValueError("the alignment needs both the policy and the LAM")
        if freeze_lam and (lam is None or policy is None):
            raise ValueError("freeze_lam needs a policy to train against the frozen LAM")
        self.policy, self.lam, self.align = policy, lam, align
        self.weights, self.freeze_lam = weights, freeze_lam
        if freeze_lam:
            lam.requires_grad_(False)

    def train(self, mode: bool = True) -> "JointObjective":
        super().train(mode)
        if self.freeze_lam:
            self.lam.eval()  # frozen: no codebook counting, nothing that depends on train mode
        return self

    def forward(self, batch: dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        lam_out = None
        if self.lam is not None:
            frame_t = self.lam.preprocess(batch["image"])
            frame_tk = self.lam.preprocess(batch["future_image"])
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_lam):
                lam_out = self.lam(frame_t, frame_tk)
            terms["lam"] = lam_out.loss
            terms["lam_recon"] = lam_out.reconstruction_loss.detach()
            terms["codes_active"] = torch.tensor(float(lam_out.indices.unique().numel()))
            # the batch's spread of z (mean per-dimension std): falls towards 0 as the latent collapses
            terms["z_spread"] = lam_out.z.detach().flatten(1).std(0).mean() if lam_out.z.shape[0] > 1 \
                else torch.tensor(0.0)
        if self.policy is None:
            terms["loss"] = lam_out.loss
            return terms

        vl = self.policy.backbone_features(batch["pixel_values"], batch["input_ids"],
                                           batch["attention_mask"])
        flow = self.policy.flow_loss(vl, batch["state"], batch["actions"], batch["action_mask"],
                                     batch["embodiment_id"], generator=generator)
        terms["flow"] = flow["loss"]
        total = flow["loss"]
        if lam_out is not None and not self.freeze_lam:
            total = total + self.weights.lam * lam_out.loss
        if self.align is not None:
            terms["align"] = alignment_loss(self.align(flow["hidden"]), lam_out.z)
            total = total + self.weights.align * terms["align"]
        terms["loss"] = total
        return terms
