"""Teleoperation: Vision Pro tracking, retargeting, and the LeRobot v3 recorder."""

if __name__ != "lara_g1.teleop":  # the repository folder teleop/ imported as a top-level package
    raise ImportError(f"import lara_g1.teleop, not {__name__}: teleop/ is installed as lara_g1.teleop")
