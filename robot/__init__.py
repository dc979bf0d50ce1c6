"""The G1 runtime: DDS drivers, hands, head, cameras, safety, control loop, simulated G1, evaluation."""

if __name__ != "lara_g1.robot":  # the repository folder robot/ imported as a top-level package
    raise ImportError(f"import lara_g1.robot, not {__name__}: robot/ is installed as lara_g1.robot")
