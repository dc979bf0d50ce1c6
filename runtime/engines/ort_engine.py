"""The ONNX Runtime engine: the exported fp32 backbone and action head, CPU or CUDA.

The execution provider is chosen automatically (CUDA when ``onnxruntime-gpu`` sees a GPU, else
CPU) or forced with ``provider="cpu"|"cuda"``. The vision-language features stay where the backbone
left them (an ``OrtValue`` on the provider's device, bound with IO binding) and go straight into
the action head, which holds the whole unrolled Euler loop: one host round trip per chunk.

Before a session is created the bundle's manifest is checked against the files (sha256, sizes)
and, once loaded, against the sessions' own inputs and outputs; a mismatch is refused.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lara_g1.core.extras import MissingExtraError
from lara_g1.lara.manifest import Artifact, Manifest, ManifestError, TensorSpec, check_io, verify_files
from lara_g1.runtime.engines.base import BundleSpec, EngineError, PipelineEngine, ms_since

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}


def resolve_provider(provider: str, available: list[str]) -> str:
    """``"auto"`` -> ``"cuda"`` when the CUDA execution provider is present, else ``"cpu"``."""
    provider = provider.lower()
    if provider == "auto":
        return "cuda" if PROVIDERS["cuda"] in available else "cpu"
    if provider not in PROVIDERS:
        raise ValueError(f"unknown ONNX Runtime provider {provider!r}; use one of auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[provider] not in available:
        if provider == "cuda":
            raise MissingExtraError(
                "the ort engine on CUDA needs onnxruntime-gpu (this onnxruntime offers only "
                f"{available}). Install it with: pip install 'lara-g1[gpu]'")
        raise EngineError(f"this onnxruntime has no {PROVIDERS[provider]} (it offers {available})")
    return provider


def session_io(session: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs an ``InferenceSession`` reports, as manifest TensorSpecs."""
    def spec(arg: Any) -> TensorSpec:
        shape = tuple(d if isinstance(d, (int, str)) else "?" for d in arg.shape)
        return TensorSpec(arg.name, _ORT_DTYPES.get(arg.type, arg.type), shape)
    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


class OrtEngine(PipelineEngine):
    kind = "ort"

    def __init__(self, spec: BundleSpec, provider: str = "auto", threads: int | None = None,
                 seed: int | None = None):
        super().__init__(spec, seed=seed)
        import onnxruntime as ort

        manifest = Manifest.load(spec.path)
        check_manifest_matches_bundle(manifest, spec)
        self.manifest = manifest
        self.device = resolve_provider(provider, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        providers = [PROVIDERS[self.device]] + (["CPUExecutionProvider"] if self.device == "cuda" else [])
        self.sessions: dict[str, Any] = {}
        self.artifacts: dict[str, Artifact] = {}
        for stage in ("backbone", "action_head"):
            art = manifest.get(stage, "onnx", "fp32")
            verify_files(spec.path, art)
            path = spec.path / art.file.path
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
            if sess.get_providers()[0] != PROVIDERS[self.device]:
                raise EngineError(f"ONNX Runtime could not place {path.name} on {self.device} "
                                  f"(it uses {sess.get_providers()}); use provider='cpu'")
            check_io(art, *session_io(sess), source=f"the ONNX Runtime session of {path}")
            self.sessions[stage], self.artifacts[stage] = sess, art
        self._backbone_inputs = [t.name for t in self.artifacts["backbone"].inputs]
        self._features_name = self.artifacts["backbone"].outputs[0].name
        self._actions_name = self.artifacts["action_head"].outputs[0].name
        self._ort = ort

    # ---- stages (public for bench/engines.py) -----------------------------------------------
    def run_backbone(self, inputs: Mapping[str, np.ndarray]) -> Any:
        """Vision-language features as an ``OrtValue`` left on the provider's device."""
        io = self.sessions["backbone"].io_binding()
        for name in self._backbone_inputs:
            io.bind_cpu_input(name, np.ascontiguousarray(inputs[name]))
        io.bind_output(self._features_name, self.device, 0)
        self.sessions["backbone"].run_with_iobinding(io)
        return io.get_outputs()[0]

    def run_action_head(self, features: Any, state: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The 4-step Euler loop: padded normalised actions float32 ``(B, H, max_action_dim)``."""
        io = self.sessions["action_head"].io_binding()
        io.bind_ortvalue_input(self._features_name, features)
        io.bind_cpu_input("state", np.ascontiguousarray(state, dtype=np.float32))
        io.bind_cpu_input("noise", np.ascontiguousarray(noise, dtype=np.float32))
        io.bind_output(self._actions_name, "cpu")
        self.sessions["action_head"].run_with_iobinding(io)
        return io.copy_outputs_to_cpu()[0]

    def run_model(self, inputs: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        ids = np.asarray(inputs["embodiment_id"])
        if np.any(ids != self.manifest.embodiment_id):
            raise EngineError(f"the exported action head serves embodiment id {self.manifest.embodiment_id} "
                              f"({self.manifest.embodiment}) only; got ids {sorted(set(ids.tolist()))}")
        t0 = time.perf_counter()
        features = self.run_backbone(inputs)
        t1 = time.perf_counter()
        actions = self.run_action_head(features, inputs["state"], noise)
        return actions, {"backbone": (t1 - t0) * 1e3, "action_head": ms_since(t1)}

    @property
    def metadata(self) -> dict[str, Any]:
        return {**super().metadata, "provider": PROVIDERS[self.device]}


def check_manifest_matches_bundle(manifest: Manifest, spec: BundleSpec) -> None:
    """The export must come from this bundle's model and configuration."""
    cfg = spec.config
    expected = {"model_id": spec.model_id, "embodiment": spec.embodiment.name,
                "embodiment_id": int(spec.embodiment.embodiment_id), "horizon": int(cfg.horizon),
                "denoising_steps": int(cfg.denoising_steps), "max_action_dim": int(cfg.max_action_dim),
                "max_state_dim": int(cfg.max_state_dim)}
    wrong = [f"{k}: manifest {getattr(manifest, k)!r}, bundle {v!r}" for k, v in expected.items()
             if getattr(manifest, k) != v]
    if wrong:
        raise ManifestError(f"the export in {Path(spec.path) / 'manifest.json'} was made from another model "
                            f"or configuration ({'; '.join(wrong)}); re-run `lara-export {spec.path} --onnx`")
