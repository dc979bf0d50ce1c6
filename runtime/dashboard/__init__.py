"""The lara-serve status dashboard (FastAPI, :mod:`.app`): /, /healthz, /api/status, /metrics, the
last frame and chunk; :mod:`.http` serves it (and lara-robot's status page) from a background thread."""
