"""GR00T N1.6 client dialect: what Isaac-GR00T's ``gr00t.policy.server_client.PolicyClient`` sends.

lara-serve answers it on its own socket, beside protocol version 1 and the older (N1.5,
``ExternalRobotInferenceClient``) GR00T dialect of :mod:`lara_g1.runtime.protocol`. A message
without ``"v"`` is a GR00T request; it is an N1.6 one when its shape says so (:func:`is_n16`):

    {"endpoint": "get_action", "data": {"observation": OBS, "options": OPTIONS or None}}
    {"endpoint": "reset", "data": {"options": OPTIONS or None}}
    {"endpoint": "ping"} / {"endpoint": "get_modality_config"}   (identical in N1.5 and N1.6)

``OBS`` is nested by modality, every array batched ``[B, T, ...]``::

    {"video": {view: uint8 [B, T, H, W, 3]}, "state": {group: float32 [B, T, D]},
     "language": {key: [[str]] * B}}

A view maps onto one of the bundle's cameras by name, state keys are the embodiment's joint groups
by name (missing or extra keys: ``bad_request`` naming them), the single language key (whatever
its name; GR00T's configs call it ``task`` or ``annotation.human.task_description``) is the
instruction, and of T steps the last is used. The reply to ``get_action`` is ``[action, info]``:
``action`` = ``{group: float32 [B, H, D]}``, ``info`` = ``{"timing_ms": {...}, "model": id}``.

Everything here is pure (no sockets); docs/PROTOCOL.md section 7.2 is the client-facing description.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lara_g1.core.observation import Observation
from lara_g1.runtime.protocol import BAD_REQUEST, ProtocolError, check_image, check_instruction

ENDPOINTS = ("ping", "get_action", "reset", "get_modality_config")

# GR00T's names for the G1's head camera: N1.6's unitree_g1 config calls it "ego_view", N1.5's
# G1 data config "rs_view". With a one-camera bundle they name that camera.
VIEW_ALIASES = ("ego_view", "rs_view")

# The language key advertised by get_modality_config (GR00T N1.6's unitree_g1 config uses it);
# get_action accepts any single language key.
LANGUAGE_KEY = "annotation.human.task_description"

_MAX_SEED = 2**63


def is_n16(endpoint: str, data: Any) -> bool:
    """True for a GR00T request only N1.6's PolicyClient sends: ``get_action`` with an
    ``observation`` (or ``options``) keyword, or ``reset`` (N1.5's server has no reset).
    ``ping`` and ``get_modality_config`` look the same in both GR00T versions: False."""
    if endpoint == "reset":
        return True
    return endpoint == "get_action" and isinstance(data, dict) and ("observation" in data or "options" in data)


def modality_config(embodiment: Mapping, cameras: Sequence[str], horizon: int) -> dict:
    """``get_modality_config`` reply in N1.6's wire form: ``as_json`` is a map (N1.6's client
    builds ``ModalityConfig(**as_json)``), not N1.5's JSON string."""
    keys = {"video": list(cameras), "state": list(embodiment["groups"]),
            "action": list(embodiment["groups"]), "language": [LANGUAGE_KEY]}
    delta = {"video": [0], "state": [0], "action": list(range(horizon)), "language": [0]}
    return {m: {"__ModalityConfig_class__": True,
                "as_json": {"delta_indices": delta[m], "modality_keys": keys[m]}}
            for m in ("video", "state", "action", "language")}


def _view_map(views: Sequence[str], cameras: Sequence[str]) -> dict[str, str]:
    """camera -> view key. Exact camera names; with one camera also GR00T's aliases."""
    accepted = list(cameras) + (list(VIEW_ALIASES) if len(cameras) == 1 else [])
    unknown = [v for v in views if v not in accepted]
    if unknown:
        raise ProtocolError(BAD_REQUEST, f"unknown video views {unknown}; this policy's cameras are "
                                         f"{list(cameras)} (accepted view names: {accepted})")
    mapping: dict[str, str] = {}
    for v in views:
        cam = v if v in cameras else cameras[0]
        if cam in mapping:
            raise ProtocolError(BAD_REQUEST, f"video views {[mapping[cam], v]} both name camera {cam!r}")
        mapping[cam] = v
    missing = [c for c in cameras if c not in mapping]
    if missing:
        raise ProtocolError(BAD_REQUEST, f"observation.video is missing cameras {missing}; "
                                         f"this policy's cameras are {list(cameras)}")
    return mapping


def _batch_of(arr: Any, key: str) -> int:
    if not isinstance(arr, np.ndarray) or arr.ndim < 1:
        raise ProtocolError(BAD_REQUEST, f"{key} must be an array ({{'__ndarray_class__': true, 'as_npy': ...}})")
    return int(arr.shape[0])


def _frames(arr: np.ndarray, key: str) -> list[np.ndarray]:
    if arr.dtype != np.uint8:
        raise ProtocolError(BAD_REQUEST, f"{key} must be uint8, got {arr.dtype}")
    if arr.ndim != 5 or arr.shape[1] < 1 or arr.shape[-1] != 3:
        raise ProtocolError(BAD_REQUEST, f"{key} must have shape [B, T, H, W, 3] with T >= 1, "
                                         f"got {list(arr.shape)}")
    return [check_image(np.ascontiguousarray(f), key) for f in arr[:, -1]]


def _state(arr: np.ndarray, key: str, size: int) -> np.ndarray:
    if arr.dtype.kind != "f":
        raise ProtocolError(BAD_REQUEST, f"{key} must be a float array (float32), got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1] < 1 or arr.shape[2] != size:
        raise ProtocolError(BAD_REQUEST, f"{key} must have shape [B, T, {size}] with T >= 1, "
                                         f"got {list(arr.shape)}")
    last = arr[:, -1].astype(np.float32)
    bad = ~np.isfinite(last)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ProtocolError(BAD_REQUEST, f"{key} holds NaN or infinite values at (batch, index) "
                                         f"{list(zip(rows.tolist(), cols.tolist()))[:8]}")
    return last


def _instructions(language: Any, batch: int) -> list[str | None]:
    if language is None or language == {}:
        return [None] * batch
    if not isinstance(language, dict):
        raise ProtocolError(BAD_REQUEST, "observation.language must be a map {key: [[str]] * B}")
    if len(language) != 1:
        raise ProtocolError(BAD_REQUEST, f"observation.language must hold one key, got {sorted(language)}")
    (key, rows), = language.items()
    where = f"observation.language[{key!r}]"
    if not isinstance(rows, list) or len(rows) != batch:
        raise ProtocolError(BAD_REQUEST, f"{where} must be a list of {batch} rows (one per batch item), "
                                         f"each [str]")
    out: list[str | None] = []
    for row in rows:
        text = row[-1] if isinstance(row, list) and row else row  # [str] per time step: the last
        if not isinstance(text, str):
            raise ProtocolError(BAD_REQUEST, f"{where} rows must be [str] (or str), got {row!r:.80}")
        try:
            out.append(check_instruction(text))
        except ProtocolError as exc:
            raise ProtocolError(BAD_REQUEST, f"{where}: {exc.message}") from None
    return out


def _seeds(options: Any, batch: int) -> list[int | None]:
    """``options["noise_seed"]`` (lara-serve's extension; GR00T ignores options): an int s gives
    row b the noise of seed s + b, a list gives each row its own seed."""
    if options is None:
        return [None] * batch
    if not isinstance(options, dict):
        raise ProtocolError(BAD_REQUEST, "options must be a map or nil")
    seed = options.get("noise_seed")
    if seed is None:
        return [None] * batch
    if isinstance(seed, list):
        seeds = seed
    elif _is_seed(seed) and seed + batch - 1 < _MAX_SEED:
        seeds = [seed + b for b in range(batch)]
    else:
        seeds = None
    if seeds is None or len(seeds) != batch or not all(_is_seed(s) for s in seeds):
        raise ProtocolError(BAD_REQUEST, f"options.noise_seed must be an integer 0 <= s <= 2**63 - {batch} "
                                         f"or a list of {batch} integers 0 <= s < 2**63")
    return list(seeds)


def _is_seed(s: Any) -> bool:
    return isinstance(s, int) and not isinstance(s, bool) and 0 <= s < _MAX_SEED


def parse_get_action(data: Any, embodiment: Mapping, cameras: Sequence[str],
                     max_batch: int) -> tuple[list[Observation], list[int | None]]:
    """The ``data`` of an N1.6 ``get_action`` to ``(observations, noise seeds)``, one per batch row."""
    if not isinstance(data, dict):
        raise ProtocolError(BAD_REQUEST, "get_action data must be a map {'observation': ..., 'options': ...}")
    unknown = sorted(set(data) - {"observation", "options"})
    if unknown:
        raise ProtocolError(BAD_REQUEST, f"get_action takes 'observation' and 'options', not {unknown}")
    obs = data.get("observation")
    if not isinstance(obs, dict):
        raise ProtocolError(BAD_REQUEST, "get_action needs 'observation', a map {'video': {...}, "
                                         "'state': {...}, 'language': {...}}")
    extra = sorted(set(obs) - {"video", "state", "language"})
    if extra:
        flat = " (the flat 'video.<view>' form of GR00T's sim wrapper is not served)" if any(
            isinstance(k, str) and "." in k for k in extra) else ""
        raise ProtocolError(BAD_REQUEST, f"observation holds unknown modalities {extra}; expected "
                                         f"'video', 'state' and 'language'{flat}")
    video, state = obs.get("video"), obs.get("state")
    if not isinstance(video, dict) or not video:
        raise ProtocolError(BAD_REQUEST, f"observation.video must be a map {{view: uint8 [B, T, H, W, 3]}} "
                                         f"holding the cameras {list(cameras)}")
    if not isinstance(state, dict):
        raise ProtocolError(BAD_REQUEST, f"observation.state must be a map {{group: float32 [B, T, D]}} "
                                         f"holding the groups {list(embodiment['groups'])}")

    views = _view_map(list(video), cameras)
    keys = {c: f"observation.video[{v!r}]" for c, v in views.items()}
    sizes = {c: _batch_of(video[v], keys[c]) for c, v in views.items()}
    batch = sizes[cameras[0]]
    if batch < 1:
        raise ProtocolError(BAD_REQUEST, "the batch is empty (B = 0)")
    if batch > max_batch:
        raise ProtocolError(BAD_REQUEST, f"a batch of {batch} exceeds this server's --max-batch {max_batch}")

    groups = embodiment["groups"]
    missing = [g for g in groups if g not in state]
    extra_keys = [k for k in state if k not in groups]
    if missing or extra_keys:
        raise ProtocolError(BAD_REQUEST, f"observation.state must hold exactly the joint groups "
                                         f"{list(groups)}; missing {missing}, unknown {extra_keys}")
    for g in groups:
        sizes[g] = _batch_of(state[g], f"observation.state[{g!r}]")
    wrong = {k: n for k, n in sizes.items() if n != batch}
    if wrong:
        raise ProtocolError(BAD_REQUEST, f"arrays disagree on the batch size: {batch} in "
                                         f"{keys[cameras[0]]}, but {wrong}")

    frames = {c: _frames(video[v], keys[c]) for c, v in views.items()}
    full = np.empty((batch, int(embodiment["dim"])), dtype=np.float32)
    for g, (start, stop, _unit) in groups.items():
        full[:, start:stop] = _state(state[g], f"observation.state[{g!r}]", stop - start)
    instructions = _instructions(obs.get("language"), batch)
    seeds = _seeds(data.get("options"), batch)
    observations = [Observation(images={c: frames[c][b] for c in cameras}, state=full[b].copy(),
                                instruction=instructions[b]) for b in range(batch)]
    return observations, seeds


def parse_reset(data: Any) -> None:
    """Validate a ``reset``'s data: ``{"options": map or nil}`` (or nothing)."""
    if data is None:
        return
    if not isinstance(data, dict) or set(data) - {"options"}:
        raise ProtocolError(BAD_REQUEST, "reset takes only 'options'")
    if data.get("options") is not None and not isinstance(data["options"], dict):
        raise ProtocolError(BAD_REQUEST, "options must be a map or nil")


def action_reply(actions: np.ndarray, embodiment: Mapping, timing_ms: Mapping[str, float], model: str) -> list:
    """``[action, info]``: our ``[B, H, dim]`` chunk split by joint group, ``{group: [B, H, n]}``."""
    action = {g: np.ascontiguousarray(actions[:, :, start:stop], dtype=np.float32)
              for g, (start, stop, _unit) in embodiment["groups"].items()}
    info = {"timing_ms": {k: float(v) for k, v in timing_ms.items()}, "model": model}
    return [action, info]
