"""The lara-serve status dashboard (FastAPI): /, /healthz, /api/status, /metrics, the last frame and chunk."""
from lara_g1.runtime.dashboard.app import DashboardServer, create_app

__all__ = ["create_app", "DashboardServer"]
