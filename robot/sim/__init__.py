"""The simulated G1: a MuJoCo upper body generated from the kinematics, the paper's two tasks,
and a DDS bridge speaking the robot's topics (``lara-sim``)."""
