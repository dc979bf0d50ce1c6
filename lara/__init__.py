"""LARA: the policy model, its training and the policy bundle."""

if __name__ != "lara_g1.lara":  # the repository folder lara/ imported as a top-level package
    raise ImportError(f"import lara_g1.lara, not {__name__}: lara/ is installed as lara_g1.lara")

__version__ = "0.1.0"
