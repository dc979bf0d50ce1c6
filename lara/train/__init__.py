"""LARA training: the alignment, the joint objective, the loop and ``lara-train``."""
