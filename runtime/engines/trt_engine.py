"""The ``trt`` engine: the shared pipeline around a :class:`~lara_g1.policy_export.trt_session.TrtSession`.

The session (both TensorRT engines on one CUDA stream, no per-call allocation, one sync per chunk,
the action head replayed as a CUDA graph) and its device checks live with the exporter that builds
the engines, so the export's parity check runs exactly what this engine runs. Engines built for
another GPU or TensorRT version are refused before deserialisation.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lara_g1.core.extras import require
from lara_g1.lara.manifest import Manifest
from lara_g1.policy_export.trt_session import TrtError, TrtSession
from lara_g1.runtime.engines.base import BundleSpec, EngineError, PipelineEngine


class TrtEngine(PipelineEngine):
    kind = "trt"

    def __init__(self, spec: BundleSpec, precision: str = "fp16", seed: int | None = None, device_index: int = 0):
        super().__init__(spec, seed=seed)
        require("tensorrt", "trt", "The trt engine")     # before anything else: name the missing extra
        from lara_g1.runtime.engines.ort_engine import check_manifest_matches_bundle

        manifest = Manifest.load(spec.path)
        check_manifest_matches_bundle(manifest, spec)
        self.manifest, self.precision = manifest, precision
        try:
            self.session = TrtSession(spec.path, precision, device_index=device_index, manifest=manifest)
        except TrtError as e:
            raise EngineError(str(e)) from e

    def run_model(self, inputs: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        ids = np.asarray(inputs["embodiment_id"])
        if np.any(ids != self.manifest.embodiment_id):
            raise EngineError(f"the engine serves embodiment id {self.manifest.embodiment_id} only")
        try:
            return self.session.run(inputs, noise)
        except TrtError as e:
            raise EngineError(str(e)) from e

    @property
    def metadata(self) -> dict[str, Any]:
        return {**super().metadata, "precision": self.precision,
                "gpu": self.session.artifacts["action_head"].build.get("gpu_name")}

    def close(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.close()
