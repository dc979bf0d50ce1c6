"""The lara-robot status page (FastAPI): /, /healthz, /api/status, POST /api/estop."""
from lara_g1.robot.dashboard.app import RobotDashboard, create_app

__all__ = ["create_app", "RobotDashboard"]
