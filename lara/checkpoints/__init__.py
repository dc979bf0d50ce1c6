"""Importing released checkpoints (GR00T N1.5, the LARA release) into lara-g1 bundles (docs/IMPORT.md)."""
from lara_g1.lara.checkpoints.hf import CheckpointError, HFCheckpoint

__all__ = ["CheckpointError", "HFCheckpoint"]
