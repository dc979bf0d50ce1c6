"""The LARA policy model: config and presets, backbones, adapter, DiT action head, flow matching."""
from lara_g1.lara.model.config import ConfigError, PolicyConfig
from lara_g1.lara.model.policy import LaraPolicy

__all__ = ["ConfigError", "LaraPolicy", "PolicyConfig"]
