"""The Latent Action Model (LAM): motion between frame t and t+k as 8 x 32 latent tokens."""
from lara_g1.lara.lam.config import PRESETS, LamConfig, LamConfigError
from lara_g1.lara.lam.io import LamLoadError, load_lam, save_lam
from lara_g1.lara.lam.model import LamOutput, LatentActionModel, count_parameters

__all__ = ["PRESETS", "LamConfig", "LamConfigError", "LamLoadError", "LamOutput",
           "LatentActionModel", "count_parameters", "load_lam", "save_lam"]
