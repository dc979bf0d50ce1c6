"""Serving: inference engines behind one interface, the ZMQ protocol, server, client, dashboard."""

if __name__ != "lara_g1.runtime":  # the repository folder runtime/ imported as a top-level package
    raise ImportError(f"import lara_g1.runtime, not {__name__}: runtime/ is installed as lara_g1.runtime")
