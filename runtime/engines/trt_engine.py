"""The TensorRT engine: both stages on one CUDA stream, no per-call allocation, one sync per chunk.

- Device buffers for every input and output are allocated once, for the engines' maximum batch;
  the backbone writes its features straight into the buffer the action head reads (no copy).
- Host staging buffers are pinned, so the copies are asynchronous on the one stream.
- The action head (the whole 4-step Euler loop, unrolled in the engine) is captured in a CUDA graph
  per batch size on first use and replayed afterwards: one launch, no host synchronisation between
  denoising steps. The host waits once, after the actions are copied back.
- Per-stage times come from CUDA events recorded on the stream, read after that single wait.

Engines built for another GPU or TensorRT version are refused before deserialisation (see
:func:`lara_g1.policy_export.trt_build.check_compatible`).
"""
from __future__ import annotations

import ctypes
from typing import Any, Mapping

import numpy as np

from lara_g1.lara.manifest import Artifact, Manifest, check_io, verify_files
from lara_g1.policy_export.trt_build import check_compatible, engine_io, query_device
from lara_g1.runtime.engines.base import BundleSpec, EngineError, PipelineEngine
from lara_g1.core.extras import cuda_runtime, require

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


class _Cuda:
    """Thin checked wrapper over the cuda-python runtime calls this engine uses."""

    def __init__(self) -> None:
        self.rt = cuda_runtime()

    def __call__(self, fn: str, *args: Any) -> Any:
        result = getattr(self.rt, fn)(*args)
        err, rest = result[0], result[1:]
        if int(err) != 0:
            raise EngineError(f"CUDA {fn} failed: {err}")
        return rest[0] if len(rest) == 1 else (rest or None)


class _Buffer:
    """A device buffer of the maximum shape, with a pinned host mirror for the copies."""

    def __init__(self, cuda: _Cuda, dtype: np.dtype, max_shape: tuple[int, ...]):
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(max_shape)) * self.dtype.itemsize
        self.device = cuda("cudaMalloc", self.nbytes)
        self.host_ptr = cuda("cudaMallocHost", self.nbytes)
        raw = (ctypes.c_byte * self.nbytes).from_address(int(self.host_ptr))
        self.host = np.frombuffer(raw, dtype=self.dtype)

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.host[: int(np.prod(shape))].reshape(shape)

    def free(self, cuda: _Cuda) -> None:
        cuda("cudaFree", self.device)
        cuda("cudaFreeHost", self.host_ptr)


class TrtEngine(PipelineEngine):
    kind = "trt"

    def __init__(self, spec: BundleSpec, precision: str = "fp16", seed: int | None = None, device_index: int = 0):
        super().__init__(spec, seed=seed)
        trt = require("tensorrt", "trt", "The trt engine")
        self._cuda = cuda = _Cuda()
        cuda("cudaSetDevice", device_index)
        device = query_device(device_index)
        manifest = Manifest.load(spec.path)
        from lara_g1.runtime.engines.ort_engine import check_manifest_matches_bundle
        check_manifest_matches_bundle(manifest, spec)
        self.manifest, self.precision = manifest, precision
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engines: dict[str, Any] = {}
        self._contexts: dict[str, Any] = {}
        self.artifacts: dict[str, Artifact] = {}
        for stage in ("backbone", "action_head"):
            art = manifest.get(stage, "trt", precision)
            check_compatible(art, device, spec.path)
            verify_files(spec.path, art)
            engine = runtime.deserialize_cuda_engine((spec.path / art.file.path).read_bytes())
            if engine is None:
                raise EngineError(f"TensorRT could not deserialise {art.file.path}; rebuild it with "
                                  f"`lara-export {spec.path} --trt --precision {precision}`")
            check_io(art, *engine_io(trt, engine), source=f"the TensorRT engine {art.file.path}")
            self._engines[stage], self._contexts[stage], self.artifacts[stage] = engine, engine.create_execution_context(), art
        self.max_batch = int(self.artifacts["action_head"].build.get("max_batch", 1))
        self._trt = trt
        self._stream = cuda("cudaStreamCreate")
        self._events = [cuda("cudaEventCreate") for _ in range(3)]
        self._graphs: dict[int, Any] = {}
        self._buffers: dict[str, _Buffer] = {}
        for art in self.artifacts.values():
            for t in [*art.inputs, *art.outputs]:
                if t.name not in self._buffers:
                    shape = tuple(self.max_batch if not isinstance(d, int) else d for d in t.shape)
                    self._buffers[t.name] = _Buffer(cuda, _NP_DTYPES[t.dtype], shape)
        for stage, ctx in self._contexts.items():
            for i in range(self._engines[stage].num_io_tensors):
                name = self._engines[stage].get_tensor_name(i)
                ctx.set_tensor_address(name, int(self._buffers[name].device))

    # ---- helpers ----------------------------------------------------------------------------
    def _shape(self, spec_shape: tuple, batch: int) -> tuple[int, ...]:
        return tuple(batch if not isinstance(d, int) else d for d in spec_shape)

    def _upload(self, name: str, array: np.ndarray) -> None:
        buf = self._buffers[name]
        view = buf.host_view(array.shape)
        np.copyto(view, array, casting="same_kind")
        self._cuda("cudaMemcpyAsync", buf.device, buf.host_ptr, view.nbytes,
                   self._cuda.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream)

    def _set_shapes(self, stage: str, batch: int) -> None:
        for t in self.artifacts[stage].inputs:
            self._contexts[stage].set_input_shape(t.name, self._shape(t.shape, batch))

    def _enqueue(self, stage: str) -> None:
        if not self._contexts[stage].execute_async_v3(int(self._stream)):
            raise EngineError(f"TensorRT failed to enqueue the {stage}")

    def _action_head_graph(self, batch: int) -> Any:
        """The action head for this batch size captured once as a CUDA graph."""
        if batch not in self._graphs:
            cuda = self._cuda
            self._set_shapes("action_head", batch)
            self._enqueue("action_head")                      # TensorRT's lazy set-up, outside the capture
            cuda("cudaStreamSynchronize", self._stream)
            cuda("cudaStreamBeginCapture", self._stream,
                 cuda.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
            self._enqueue("action_head")
            graph = cuda("cudaStreamEndCapture", self._stream)
            self._graphs[batch] = cuda("cudaGraphInstantiate", graph, 0)
            cuda("cudaGraphDestroy", graph)                   # the executable graph keeps what it needs
        return self._graphs[batch]

    # ---- the pipeline -----------------------------------------------------------------------
    def run_model(self, inputs: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        batch = noise.shape[0]
        if batch > self.max_batch:
            raise EngineError(f"batch {batch} exceeds the TensorRT engines' maximum batch {self.max_batch}; "
                              f"rebuild with a larger maximum or send fewer observations at once")
        ids = np.asarray(inputs["embodiment_id"])
        if np.any(ids != self.manifest.embodiment_id):
            raise EngineError(f"the engine serves embodiment id {self.manifest.embodiment_id} only")
        cuda, ev = self._cuda, self._events
        graph = self._action_head_graph(batch)
        cuda("cudaEventRecord", ev[0], self._stream)
        for t in self.artifacts["backbone"].inputs:
            self._upload(t.name, np.asarray(inputs[t.name]))
        self._upload("state", np.asarray(inputs["state"], dtype=np.float32))
        self._upload("noise", noise)
        self._set_shapes("backbone", batch)
        self._enqueue("backbone")
        cuda("cudaEventRecord", ev[1], self._stream)
        cuda("cudaGraphLaunch", graph, self._stream)
        out_name = self.artifacts["action_head"].outputs[0].name
        out = self._buffers[out_name]
        shape = self._shape(self.artifacts["action_head"].outputs[0].shape, batch)
        view = out.host_view(shape)
        cuda("cudaMemcpyAsync", out.host_ptr, out.device, view.nbytes,
             cuda.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream)
        cuda("cudaEventRecord", ev[2], self._stream)
        cuda("cudaStreamSynchronize", self._stream)          # the one host wait per chunk
        timing = {"backbone": float(cuda("cudaEventElapsedTime", ev[0], ev[1])),
                  "action_head": float(cuda("cudaEventElapsedTime", ev[1], ev[2]))}
        return view.astype(np.float32, copy=True), timing

    @property
    def metadata(self) -> dict[str, Any]:
        return {**super().metadata, "precision": self.precision,
                "gpu": self.artifacts["action_head"].build.get("gpu_name")}

    def close(self) -> None:
        cuda = getattr(self, "_cuda", None)
        if cuda is None or not getattr(self, "_buffers", None):
            return
        cuda("cudaStreamSynchronize", self._stream)
        for g in self._graphs.values():
            cuda("cudaGraphExecDestroy", g)
        for b in self._buffers.values():
            b.free(cuda)
        for e in self._events:
            cuda("cudaEventDestroy", e)
        cuda("cudaStreamDestroy", self._stream)
        self._buffers, self._graphs = {}, {}
