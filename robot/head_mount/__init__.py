"""The head mount's own controller (``lara-head``): two Dynamixel servos behind ``lara/head/cmd`` and
``lara/head/state``, the topics the robot side's ``head.driver: dds`` speaks (docs/ROBOT.md,
"Head mount (Dynamixel)").

- :mod:`.config`: the mount's config file (port, servo IDs, joint limits, zero offsets) and the
  tick <-> radian conversion;
- :mod:`.bus`: the servos through ``dynamixel-sdk`` (the ``head`` extra), Protocol 2.0;
- :mod:`.controller`: commands -> clipped, rate-limited goals; the arms' watchdog rule (stale
  commands hold, then torque off); the DDS server publishing the state at the control rate;
- :mod:`.cli`: ``lara-head serve`` and ``lara-head calibrate``.
"""
