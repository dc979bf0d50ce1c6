"""TensorRT engines on this GPU: the device checks, and one session running a bundle's two engines.

A TensorRT engine only runs on the GPU model (compute capability) and TensorRT version it was built
with; :func:`check_compatible` refuses a mismatch with a message that says to rebuild, before
TensorRT would fail with an opaque deserialisation error.

:class:`TrtSession` is to the TensorRT engines what an ONNX Runtime ``InferenceSession`` is to a
graph: the export's parity check (:mod:`lara_g1.policy_export.parity`) and the server's ``trt``
engine (:mod:`lara_g1.runtime.engines.trt_engine`) both run the engines through it.

- Device buffers for every input and output are allocated once, for the engines' maximum batch;
  the backbone writes its features straight into the buffer the action head reads (no copy).
- Host staging buffers are pinned, so the copies are asynchronous on the one stream.
- The action head (the whole 4-step Euler loop, unrolled in the engine) is captured in a CUDA graph
  per batch size on first use and replayed afterwards: one launch, no host synchronisation between
  denoising steps. The host waits once, after the actions are copied back.
- Per-stage times come from CUDA events recorded on the stream, read after that single wait.

``tensorrt`` and ``cuda-python`` are the ``trt`` extra, imported only when an engine is built or run.
"""
from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lara_g1.core.errors import LaraError
from lara_g1.core.extras import cuda_runtime, require
from lara_g1.lara.manifest import Artifact, Manifest, ManifestError, TensorSpec, check_io, verify_files

STAGES = ("backbone", "action_head")


class TrtError(LaraError, RuntimeError):
    """TensorRT or CUDA failed, or the engines cannot serve this request."""


class EngineMismatchError(ManifestError):
    """A TensorRT engine built for another GPU model or TensorRT version."""


@dataclass(frozen=True)
class DeviceInfo:
    """Where an engine is built or run: the GPU's name, its compute capability, the TensorRT version."""

    gpu_name: str
    compute_capability: str   # "9.0"
    trt_version: str          # "10.9.0.34"

    def to_dict(self) -> dict[str, str]:
        return {"gpu_name": self.gpu_name, "compute_capability": self.compute_capability,
                "trt_version": self.trt_version}


def _trt_major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:3])


def check_compatible(artifact: Artifact, device: DeviceInfo, bundle: str | Path = "BUNDLE") -> None:
    """Refuse an engine built for another GPU model, compute capability or TensorRT version."""
    built = artifact.build
    problems = []
    if built.get("gpu_name") != device.gpu_name:
        problems.append(f"GPU {built.get('gpu_name')!r} (this machine: {device.gpu_name!r})")
    if built.get("compute_capability") != device.compute_capability:
        problems.append(f"compute capability {built.get('compute_capability')} "
                        f"(this machine: {device.compute_capability})")
    if _trt_major_minor(str(built.get("trt_version", ""))) != _trt_major_minor(device.trt_version):
        problems.append(f"TensorRT {built.get('trt_version')} (this machine: {device.trt_version})")
    if problems:
        raise EngineMismatchError(
            f"the TensorRT engine {artifact.file.path} was built for {', '.join(problems)}. TensorRT engines "
            f"only run where they were built: rebuild it on this machine with "
            f"`lara-export {bundle} --trt --precision {artifact.precision}`")


def query_device(device_index: int = 0) -> DeviceInfo:
    """The current GPU and TensorRT version (needs the ``trt`` extra and a CUDA device)."""
    trt = require("tensorrt", "trt", "TensorRT")
    cudart = cuda_runtime()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise TrtError(f"no CUDA device is visible (cudaGetDeviceCount: {err}); TensorRT needs an NVIDIA GPU")
    err, prop = cudart.cudaGetDeviceProperties(device_index)
    if int(err) != 0:
        raise TrtError(f"cudaGetDeviceProperties({device_index}) failed: {err}")
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceInfo(name, f"{prop.major}.{prop.minor}", trt.__version__)


_TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT64": "int64", "INT32": "int32",
               "BOOL": "bool"}


def trt_dtype_name(trt: Any, dtype: Any) -> str:
    for member, name in _TRT_DTYPES.items():
        if hasattr(trt.DataType, member) and dtype == getattr(trt.DataType, member):
            return name
    return str(dtype)


def engine_io(trt: Any, engine: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """An engine's inputs and outputs as TensorSpecs (dynamic dims are -1 in TensorRT, "batch" here)."""
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple("batch" if (j == 0 and d == -1) else int(d) for j, d in enumerate(engine.get_tensor_shape(name)))
        spec = TensorSpec(name, trt_dtype_name(trt, engine.get_tensor_dtype(name)), shape)
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
    return inputs, outputs


_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


class _Cuda:
    """Thin checked wrapper over the cuda-python runtime calls this engine uses."""

    def __init__(self) -> None:
        self.rt = cuda_runtime()

    def __call__(self, fn: str, *args: Any) -> Any:
        result = getattr(self.rt, fn)(*args)
        err, rest = result[0], result[1:]
        if int(err) != 0:
            raise TrtError(f"CUDA {fn} failed: {err}")
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


class TrtSession:
    """A bundle's backbone and action-head engines of one precision, loaded on one GPU.

    ``run(inputs, noise)`` takes the preprocessed inputs of a batch and the flow noise, and returns
    the padded, normalised actions ``(B, H, max_action_dim)`` and the per-stage times in ms.
    """

    def __init__(self, bundle: str | Path, precision: str = "fp16", device_index: int = 0,
                 manifest: Manifest | None = None):
        bundle = Path(bundle)
        trt = require("tensorrt", "trt", "Running TensorRT engines")
        self._cuda = cuda = _Cuda()
        cuda("cudaSetDevice", device_index)
        device = query_device(device_index)
        self.manifest = manifest = manifest or Manifest.load(bundle)
        self.precision = precision
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engines: dict[str, Any] = {}
        self._contexts: dict[str, Any] = {}
        self.artifacts: dict[str, Artifact] = {}
        for stage in STAGES:
            art = manifest.get(stage, "trt", precision)
            check_compatible(art, device, bundle)
            verify_files(bundle, art)
            engine = runtime.deserialize_cuda_engine((bundle / art.file.path).read_bytes())
            if engine is None:
                raise TrtError(f"TensorRT could not deserialise {art.file.path}; rebuild it with "
                               f"`lara-export {bundle} --trt --precision {precision}`")
            check_io(art, *engine_io(trt, engine), source=f"the TensorRT engine {art.file.path}")
            self._engines[stage], self._contexts[stage], self.artifacts[stage] = engine, engine.create_execution_context(), art
        self.max_batch = int(self.artifacts["action_head"].build.get("max_batch", 1))
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
            raise TrtError(f"TensorRT failed to enqueue the {stage}")

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
    def run(self, inputs: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        batch = noise.shape[0]
        if batch > self.max_batch:
            raise TrtError(f"batch {batch} exceeds the TensorRT engines' maximum batch {self.max_batch}; "
                           f"rebuild with a larger maximum or send fewer observations at once")
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
