"""TensorRT engines from the exported ONNX graphs, built on the GPU that will run them.

A TensorRT engine only runs on the GPU model (compute capability) and TensorRT version it was built
with. The engine file name carries all three (``action_head.fp16.NVIDIA-H100-80GB-HBM3.sm90.trt10.9.0.engine``),
the manifest records them, and :func:`check_compatible` refuses a mismatch with a message that says
to rebuild, before TensorRT would fail with an opaque deserialisation error.

Networks are strongly typed: the precision is the ONNX graph's own (the fp16/bf16 ONNX export casts
the weights and the velocity network and keeps the Euler accumulation and the I/O in fp32), so the
engine computes in exactly the types that were exported and checked.

``tensorrt`` and ``cuda-python`` are the ``trt`` extra, imported only when an engine is built or run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lara_g1.lara.manifest import Artifact, FileDigest, Manifest, ManifestError, TensorSpec
from lara_g1.core.extras import cuda_runtime, require

# Tolerances of the TensorRT build's parity check: max abs error of the normalised padded actions
# of the whole chunk against torch fp32 on the same inputs and noise.
TRT_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 6e-2}
DEFAULT_MAX_BATCH = 8
ENGINE_SUFFIX = ".engine"


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def engine_filename(stage: str, precision: str, device: DeviceInfo) -> str:
    """``{stage}.{precision}.{gpu}.sm{cc}.trt{version}.engine``, with names made file-system safe."""
    sm = "sm" + device.compute_capability.replace(".", "")
    return f"{stage}.{precision}.{_slug(device.gpu_name)}.{sm}.trt{_slug(device.trt_version)}{ENGINE_SUFFIX}"


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
        raise RuntimeError(f"no CUDA device is visible (cudaGetDeviceCount: {err}); TensorRT needs an NVIDIA GPU")
    err, prop = cudart.cudaGetDeviceProperties(device_index)
    if int(err) != 0:
        raise RuntimeError(f"cudaGetDeviceProperties({device_index}) failed: {err}")
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


def profile_shapes(inputs: list[TensorSpec], max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """min/opt/max shapes of each input: batch 1..max_batch, optimised for batch 1 (one robot)."""
    shapes = {}
    for spec in inputs:
        fixed = [d for d in spec.shape[1:]]
        if any(not isinstance(d, int) for d in fixed):
            raise ManifestError(f"{spec.describe()}: only the batch dimension may be dynamic for TensorRT")
        shapes[spec.name] = ((1, *fixed), (1, *fixed), (max_batch, *fixed))
    return shapes


def build_engine(onnx_path: Path, engine_path: Path, inputs: list[TensorSpec], max_batch: int = DEFAULT_MAX_BATCH,
                 workspace_gib: float = 8.0) -> None:
    """Parse ``onnx_path`` into a strongly typed network and write the serialised engine."""
    trt = require("tensorrt", "trt", "Building TensorRT engines")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(inputs, max_batch).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    tmp = engine_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)


def build_trt(bundle: str | Path, precision: str = "fp16", max_batch: int = DEFAULT_MAX_BATCH,
              seed: int | None = None, log=print) -> Manifest:
    """Build both engines for this GPU from the bundle's ONNX of ``precision``, check the parity of
    the whole chunk against torch fp32, and record engines and parity in the manifest."""
    from lara_g1.policy_export.parity import trt_parity

    trt = require("tensorrt", "trt", "Building TensorRT engines")
    bundle = Path(bundle)
    manifest = Manifest.load(bundle)
    device = query_device()
    out_dir = bundle / "trt"
    out_dir.mkdir(exist_ok=True)
    built = []
    for stage in ("backbone", "action_head"):
        src = manifest.get(stage, "onnx", precision)
        name = engine_filename(stage, precision, device)
        log(f"building {out_dir / name} from {src.file.path} (strongly typed, {precision}, batch 1..{max_batch})")
        build_engine(bundle / src.file.path, out_dir / name, src.inputs, max_batch=max_batch)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine((out_dir / name).read_bytes())
        inputs, outputs = engine_io(trt, engine)
        art = Artifact(stage=stage, format="trt", precision=precision,
                       file=FileDigest.of(bundle, f"trt/{name}"), inputs=inputs, outputs=outputs,
                       build={**device.to_dict(), "max_batch": max_batch, "strongly_typed": True,
                              "onnx": src.file.path})
        manifest.add(art)
        built.append(art)
    manifest.save(bundle)          # the engine loader reads the engines from the manifest
    tol = TRT_TOLERANCE[precision]
    try:
        error = trt_parity(bundle, precision, seed=seed)
        log(f"TensorRT {precision} parity against torch fp32 (whole chunk, max abs error): {error:.3g} "
            f"(tolerance {tol:g})")
        if not error <= tol:
            raise RuntimeError(f"TensorRT {precision} engines exceed the parity tolerance: {error:.3g} > {tol:g}; "
                               f"they were removed")
    except BaseException:
        for art in built:          # engines that failed (or could not run) their check are not kept
            manifest.artifacts.pop(art.key, None)
            (bundle / art.file.path).unlink(missing_ok=True)
        manifest.save(bundle)
        raise
    for art in built:
        art.parity = {"chunk_max_abs_error": error, "tolerance": tol, "reference": "torch fp32",
                      "inputs": "fresh random observations and noise"}
    manifest.save(bundle)
    return manifest
