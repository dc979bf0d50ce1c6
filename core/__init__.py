"""The bottom layer: the embodiment's joint layout, config loading, errors, observation types."""

if __name__ != "lara_g1.core":  # the repository folder core/ imported as a top-level package
    raise ImportError(f"import lara_g1.core, not {__name__}: core/ is installed as lara_g1.core")
