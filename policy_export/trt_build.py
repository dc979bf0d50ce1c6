"""TensorRT engines from the exported ONNX graphs, built on the GPU that will run them.

A TensorRT engine only runs on the GPU model (compute capability) and TensorRT version it was built
with. The engine file name carries all three (``action_head.fp16.NVIDIA-H100-80GB-HBM3.sm90.trt10.9.0.engine``),
the manifest records them, and :func:`lara_g1.policy_export.trt_session.check_compatible` refuses a
mismatch before an engine is loaded.

Networks are strongly typed: the precision is the ONNX graph's own (the fp16/bf16 ONNX export casts
the weights and the velocity network and keeps the Euler accumulation and the I/O in fp32), so the
engine computes in exactly the types that were exported and checked.

Graphs with external data (``action_head.onnx`` + ``action_head.onnx.data``, the full-size head)
are parsed from their file path (``OnnxParser.parse_from_file``), never from bytes: TensorRT then
resolves the data file next to the graph. The data file is checked before TensorRT sees the graph
(present, and against the manifest's sha256 in :func:`build_trt`).

``tensorrt`` and ``cuda-python`` are the ``trt`` extra, imported only when an engine is built or run.
"""
from __future__ import annotations

import re
from pathlib import Path

from lara_g1.core.extras import require
from lara_g1.lara.manifest import Artifact, FileDigest, Manifest, ManifestError, TensorSpec, verify_files
from lara_g1.policy_export.trt_session import DeviceInfo, TrtError, engine_io, query_device

# Tolerances of the TensorRT build's parity check: max abs error of the normalised padded actions
# of the whole chunk against torch fp32 on the same inputs and noise.
TRT_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 6e-2}
DEFAULT_MAX_BATCH = 8
ENGINE_SUFFIX = ".engine"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def engine_filename(stage: str, precision: str, device: DeviceInfo) -> str:
    """``{stage}.{precision}.{gpu}.sm{cc}.trt{version}.engine``, with names made file-system safe."""
    sm = "sm" + device.compute_capability.replace(".", "")
    return f"{stage}.{precision}.{_slug(device.gpu_name)}.{sm}.trt{_slug(device.trt_version)}{ENGINE_SUFFIX}"


def profile_shapes(inputs: list[TensorSpec], max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """min/opt/max shapes of each input: batch 1..max_batch, optimised for batch 1 (one robot)."""
    shapes = {}
    for spec in inputs:
        fixed = list(spec.shape[1:])
        if any(not isinstance(d, int) for d in fixed):
            raise ManifestError(f"{spec.describe()}: only the batch dimension may be dynamic for TensorRT")
        shapes[spec.name] = ((1, *fixed), (1, *fixed), (max_batch, *fixed))
    return shapes


def build_engine(onnx_path: Path, engine_path: Path, inputs: list[TensorSpec], max_batch: int = DEFAULT_MAX_BATCH,
                 workspace_gib: float = 8.0) -> None:
    """Parse ``onnx_path`` into a strongly typed network and write the serialised engine.

    The graph is parsed from its path, so TensorRT finds an external-data file next to it."""
    onnx_path = Path(onnx_path)
    missing = [name for name in _external_data_files(onnx_path) if not (onnx_path.parent / name).is_file()]
    if missing:
        raise TrtError(f"{onnx_path} keeps its weights in the external-data file(s) {', '.join(missing)}, which are "
                       f"missing from {onnx_path.parent}; copy them next to the graph or re-run lara-export")
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
        raise TrtError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(inputs, max_batch).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    tmp = engine_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)


def _external_data_files(onnx_path: Path) -> list[str]:
    from lara_g1.policy_export.onnx_export import external_data_files

    return external_data_files(onnx_path)


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
        verify_files(bundle, src)    # the graph and its external-data file, against the manifest
        data = "".join(f" + {d.path}" for d in src.data_files)
        log(f"building {out_dir / name} from {src.file.path}{data} (strongly typed, {precision}, batch 1..{max_batch})")
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
            raise TrtError(f"TensorRT {precision} engines exceed the parity tolerance: {error:.3g} > {tol:g}; "
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
