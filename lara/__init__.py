"""LARA: the policy model, its training and the policy bundle."""

__version__ = "0.1.0"
