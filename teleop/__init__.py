"""Teleoperation: Vision Pro tracking, retargeting, and the LeRobot v3 recorder."""
