"""The LARA policy: backbone + adapter (VL tokens) and the flow-matching DiT action head.

Inference, as exported: ``vl = backbone_features(pixels, ids, mask)`` once, then
``sample(vl, state, embodiment_id, noise)`` = ``denoising_steps`` Euler steps of
``velocity``. All tensors are in the normalised, padded space of
:class:`lara_g1.lara.processing.Preprocessor` (state 64-D, actions 32-D, both in [-1, 1]).

With ``mask_vl_padding`` the VL tensor carries its key mask (1 = token, 0 = pad) as one trailing
channel, ``[B, N, vl_dim + 1]``, and with GR00T N1.6's alternating cross-attention also its image
mask (``[B, N, vl_dim + 2]``): the backbone graph hands one tensor to the head graph in every
engine, and the head's cross-attention skips the pads (:func:`pack_vl` / :func:`unpack_vl`).
"""
from __future__ import annotations

import torch
from torch import nn

from lara_g1.core.embodiment import load_embodiment
from lara_g1.lara.model.adapter import VLAdapter
from lara_g1.lara.model.backbone import build_backbone
from lara_g1.lara.model.config import ConfigError, PolicyConfig
from lara_g1.lara.model.dit import DiT
from lara_g1.lara.model.embodiment_mlp import ActionEncoder, EmbodimentMLP
from lara_g1.lara.model.flow import euler_buckets, interpolate, sample_flow_time, time_to_bucket


def pack_vl(features: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor:
    """``features [B, N, D]`` and masks ``[B, N]`` (the pad mask, then the image mask if any) ->
    ``[B, N, D + len(masks)]``, the masks last."""
    return torch.cat([features, *(m.to(features.dtype).unsqueeze(-1) for m in masks)], dim=-1)


def vl_mask_channels(config: PolicyConfig) -> int:
    """Mask channels the VL tensor carries: 0, 1 (pad mask) or 2 (pad and image masks, N1.6)."""
    if not config.mask_vl_padding:
        return 0
    return 2 if config.vl_cross_attention == "alternate" else 1


def unpack_vl(vl: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The inverse of :func:`pack_vl`: ``(features, pad mask or None, image mask or None)``."""
    if channels == 0:
        return vl, None, None
    features = vl[..., :-channels]
    return features, vl[..., -channels], (vl[..., -1] if channels == 2 else None)


class ActionHead(nn.Module):
    """State encoder, action encoder (+ position embeddings), DiT and action decoder.

    ``velocity`` is a pure function of its tensor inputs with no data-dependent control
    flow, so the whole Euler loop unrolls into one ONNX graph.
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        w, e = config.width, config.num_embodiments
        self.state_encoder = EmbodimentMLP(e, config.max_state_dim, config.hidden_size, w)
        self.action_encoder = ActionEncoder(e, config.max_action_dim, w)
        self.position_embedding = nn.Embedding(config.max_seq_len, w)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.future_tokens = None
        if config.num_future_tokens:
            self.future_tokens = nn.Embedding(config.num_future_tokens, w)
            nn.init.normal_(self.future_tokens.weight, std=0.02)
        self.dit = DiT(w, config.dit_heads, config.dit_head_dim, config.dit_layers, config.dit_output_dim,
                       config.cross_attention_dim, config.timestep_embed_dim, config.timestep_freq_shift,
                       config.vl_cross_attention, config.attend_text_every_n_blocks)
        self.action_decoder = EmbodimentMLP(e, config.dit_output_dim, config.hidden_size, config.max_action_dim)

    def forward(self, vl_features: torch.Tensor, state: torch.Tensor, noisy_actions: torch.Tensor,
                timestep: torch.Tensor, embodiment_id: torch.Tensor, vl_mask: torch.Tensor | None = None,
                image_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The velocity at the H action tokens, and the DiT's hidden states (input + each block)."""
        horizon = noisy_actions.shape[1]
        state_token = self.state_encoder(state.unsqueeze(1), embodiment_id)                # [B, 1, W]
        action_tokens = self.action_encoder(noisy_actions, timestep, embodiment_id)         # [B, H, W]
        action_tokens = action_tokens + self.position_embedding.weight[:horizon]
        tokens = [state_token, action_tokens]
        if self.future_tokens is not None:  # [state, future, actions]; positions only on the actions
            tokens.insert(1, self.future_tokens.weight.unsqueeze(0).expand(state.shape[0], -1, -1))
        out, hidden = self.dit(torch.cat(tokens, dim=1), vl_features, timestep, vl_mask, image_mask)
        return self.action_decoder(out[:, -horizon:], embodiment_id), hidden


class LaraPolicy(nn.Module):
    def __init__(self, config: PolicyConfig, load_backbone_weights: bool = True):
        super().__init__()
        embodiment = load_embodiment(config.embodiment)
        if embodiment.embodiment_id >= config.num_embodiments:
            raise ConfigError(f"embodiment {embodiment.name!r} has id {embodiment.embodiment_id} but the policy "
                              f"has only {config.num_embodiments} embodiment rows")
        if embodiment.dim > min(config.max_state_dim, config.max_action_dim):
            raise ConfigError(f"embodiment {embodiment.name!r} has {embodiment.dim} joints but the policy pads state "
                              f"to {config.max_state_dim} and actions to {config.max_action_dim}")
        self.config = config
        self.embodiment = embodiment
        self.backbone = build_backbone(config, load_weights=load_backbone_weights)
        if not config.tune_backbone:
            self.backbone.requires_grad_(False)
        self.adapter = VLAdapter(config)
        self.head = ActionHead(config)
        # loss covers the embodiment's real action dimensions only, not the padding
        dim_mask = torch.zeros(config.max_action_dim)
        dim_mask[: embodiment.dim] = 1.0
        self.register_buffer("action_dim_mask", dim_mask, persistent=False)

    def train(self, mode: bool = True) -> "LaraPolicy":
        """A frozen backbone stays in eval mode (no dropout) while the rest trains."""
        super().train(mode)
        if not self.config.tune_backbone:
            self.backbone.eval()
        return self

    def backbone_features(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
        """Adapted VL tokens ``[B, N, vl_dim]`` (backbone, then the LayerNorm + self-attention adapter);
        with ``mask_vl_padding`` ``[B, N, vl_dim + 1]``, the key mask packed last (:func:`pack_vl`)."""
        tokens = self.backbone(pixel_values, input_ids, attention_mask)
        channels = vl_mask_channels(self.config)
        if not channels:
            return self.adapter(tokens)
        # the text tokens come last in every backbone's sequence; anything before them is real
        lead = torch.ones_like(attention_mask[:, :1]).expand(-1, tokens.shape[1] - attention_mask.shape[1])
        mask = torch.cat([lead, attention_mask], dim=1)
        adapted = self.adapter(tokens, key_mask=mask)
        if channels == 1:
            return pack_vl(adapted, mask)
        # image tokens: the stand-in's leading patches, and the Eagle prompts' <IMG_CONTEXT> positions
        token_id = getattr(self.backbone, "image_token_id", None)
        in_text = (input_ids == token_id) if token_id is not None else torch.zeros_like(attention_mask)
        image = torch.cat([torch.ones_like(lead), in_text.to(mask.dtype)], dim=1)
        return pack_vl(adapted, mask, image)

    def velocity(self, vl_features: torch.Tensor, state: torch.Tensor, noisy_actions: torch.Tensor,
                 timestep: torch.Tensor, embodiment_id: torch.Tensor, return_hidden: bool = False):
        """Predicted flow velocity ``[B, H, max_action_dim]`` at bucket ``timestep i64 [B]``;
        with ``return_hidden`` also the DiT's hidden states (input, then each block's output)."""
        features, mask, image = unpack_vl(vl_features, vl_mask_channels(self.config))
        v, hidden = self.head(features, state, noisy_actions, timestep, embodiment_id, mask, image)
        return (v, hidden) if return_hidden else v

    def flow_loss(self, vl_features: torch.Tensor, state: torch.Tensor, actions: torch.Tensor,
                  action_mask: torch.Tensor, embodiment_id: torch.Tensor,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Flow-matching MSE over the valid steps (``action_mask [B, H]``) and real action dims.

        Returns ``loss``, ``hidden`` (the DiT hidden state ``align_hidden_layer`` selects,
        ``[B, S, width]``, for the alignment loss), ``t`` (the sampled flow times) and
        ``timestep`` (their buckets)."""
        cfg = self.config
        # draw on the generator's device (a CPU generator may drive a GPU model), then move
        draw = generator.device if generator is not None else actions.device
        t = sample_flow_time(actions.shape[0], cfg.noise_beta_alpha, cfg.noise_s, generator, draw).to(actions.device)
        noise = torch.randn(actions.shape, generator=generator, device=draw, dtype=actions.dtype).to(actions.device)
        timestep = time_to_bucket(t, cfg.num_timestep_buckets)
        v, hidden = self.velocity(vl_features, state, interpolate(noise, actions, t), timestep, embodiment_id,
                                  return_hidden=True)
        mask = action_mask.to(v.dtype).unsqueeze(-1) * self.action_dim_mask
        err = (v - (actions - noise)).pow(2) * mask
        loss = err.sum() / mask.sum().clamp(min=1.0)
        return {"loss": loss, "hidden": hidden[cfg.align_hidden_layer], "t": t, "timestep": timestep}

    def sample(self, vl_features: torch.Tensor, state: torch.Tensor, embodiment_id: torch.Tensor,
               noise: torch.Tensor) -> torch.Tensor:
        """Euler-integrate the flow from ``noise [B, H, max_action_dim]`` to normalised actions."""
        steps = self.config.denoising_steps
        actions = noise
        for bucket in euler_buckets(steps, self.config.num_timestep_buckets):
            timestep = torch.zeros_like(embodiment_id) + bucket
            actions = actions + self.velocity(vl_features, state, actions, timestep, embodiment_id) * (1.0 / steps)
        return actions

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                state: torch.Tensor, embodiment_id: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The whole inference path: preprocessed inputs -> normalised padded actions ``[B, H, 32]``."""
        return self.sample(self.backbone_features(pixel_values, input_ids, attention_mask), state, embodiment_id, noise)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level child and in total (works on meta-device modules)."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
