"""Saving and loading a LAM directory: ``config.json`` plus ``model.safetensors``.

The directory holds every weight, the frozen encoder's included, so loading never needs the
hub or the original encoder path. Inside a policy bundle this directory is ``lam/``; its
``config.json`` (``format_version``, ``class``, ``config``) is the same whether
:func:`save_lam` or :func:`lara_g1.lara.bundle.save_bundle` wrote it.

Two variants, told apart by ``class`` (the model's module and class name): the project's own
:class:`~lara_g1.lara.lam.model.LatentActionModel` (also what a ``config.json`` without ``class``
holds) and the LARA release's tokenizer, :class:`~lara_g1.lara.lam.moto.MotoLatentActionModel`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from lara_g1.core.errors import LaraError
from lara_g1.lara.lam.config import LamConfig, LamConfigError
from lara_g1.lara.lam.model import LatentActionModel

if TYPE_CHECKING:
    from lara_g1.lara.lam.moto import MotoLatentActionModel

FORMAT_VERSION = 1
CLASS_NAME = f"{LatentActionModel.__module__}.{LatentActionModel.__qualname__}"
# lara_g1.lara.lam.moto imports this module, so it is imported only when needed.
MOTO_CLASS_NAME = "lara_g1.lara.lam.moto.MotoLatentActionModel"


class LamLoadError(LaraError, ValueError):
    """A LAM directory that cannot be loaded; the message says what is wrong."""


def save_lam(lam: LatentActionModel | MotoLatentActionModel, path: str | Path) -> Path:
    """Write ``lam`` (either variant) as ``config.json`` + ``model.safetensors`` under ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in lam.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    meta = {"format_version": FORMAT_VERSION, "class": f"{type(lam).__module__}.{type(lam).__qualname__}",
            "config": lam.config.to_dict()}
    (path / "config.json").write_text(json.dumps(meta, indent=2))
    return path


def read_model_dir(path: Path, what: str) -> tuple[object, Path]:
    """``(config.json parsed, model.safetensors path)`` of a model directory; a missing file or bad
    JSON is a :class:`LamLoadError` naming ``what`` the directory should be."""
    config_file, weights_file = path / "config.json", path / "model.safetensors"
    for f in (config_file, weights_file):
        if not f.is_file():
            raise LamLoadError(f"{path} is not {what}: {f.name} is missing")
    try:
        return json.loads(config_file.read_text()), weights_file
    except json.JSONDecodeError as e:
        raise LamLoadError(f"{config_file} is not valid JSON: {e}") from e


def load_lam(path: str | Path, device: str | torch.device = "cpu") -> LatentActionModel | MotoLatentActionModel:
    """A LAM directory written by :func:`save_lam` (or a bundle's ``lam/``): a
    :class:`LatentActionModel` or, where ``class`` names it, a ``MotoLatentActionModel``."""
    path = Path(path)
    meta, weights_file = read_model_dir(path, "a LAM directory")
    config_file = path / "config.json"
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise LamLoadError(f"{config_file}: format version {version!r}, expected {FORMAT_VERSION}")
    class_name = meta.get("class", CLASS_NAME)
    if class_name == CLASS_NAME:
        config_type, build = LamConfig, lambda c: LatentActionModel(c, load_encoder_weights=False)
    elif class_name == MOTO_CLASS_NAME:
        from lara_g1.lara.lam.moto import MotoLamConfig, MotoLatentActionModel

        config_type, build = MotoLamConfig, MotoLatentActionModel  # random encoder, overwritten below
    else:
        raise LamLoadError(f"{config_file}: holds a {class_name}, not a {CLASS_NAME} or a {MOTO_CLASS_NAME}")
    try:
        config = config_type.from_dict(meta["config"])
    except (KeyError, TypeError, LamConfigError) as e:
        raise LamLoadError(f"{config_file}: bad LAM config: {e}") from e
    lam = build(config)
    state = load_file(str(weights_file))
    expected = lam.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise LamLoadError(f"{weights_file}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise LamLoadError(f"{weights_file}: {name} has shape {tuple(tensor.shape)}, "
                               f"the config says {tuple(expected[name].shape)}")
    lam.load_state_dict(state)
    return lam.to(device)
