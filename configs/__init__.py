"""The project's YAML configuration files, shipped as package data (read through
:func:`lara_g1.core.config.config_path`)."""

if __name__ != "lara_g1.configs":  # the repository folder configs/ imported as a top-level package
    raise ImportError(f"import lara_g1.configs, not {__name__}: configs/ is installed as lara_g1.configs")
