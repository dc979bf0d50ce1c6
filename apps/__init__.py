"""The orchestrators: the whole loop in simulation (``lara-loop``) and the demo (``lara-demo``)."""

if __name__ != "lara_g1.apps":  # the repository folder apps/ imported as a top-level package
    raise ImportError(f"import lara_g1.apps, not {__name__}: apps/ is installed as lara_g1.apps")
