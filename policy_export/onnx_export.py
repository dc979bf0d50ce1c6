"""Export a bundle's policy to ``onnx/backbone.onnx`` and ``onnx/action_head.onnx``, measure parity.

- The backbone graph maps ``pixel_values f32[batch,3,S,S]``, ``input_ids i64[batch,T]``,
  ``attention_mask i64[batch,T]`` to ``vl_features f32[batch,N,D]``.
- The action head graph maps ``vl_features``, ``state f32[batch,64]`` and ``noise f32[batch,H,32]`` to
  ``actions f32[batch,H,32]`` (normalised, padded): the whole Euler loop unrolled, for the deployed
  embodiment only (:class:`lara_g1.policy_export.graphs.DeployedActionHead`).
- The batch axis is dynamic; everything else is fixed by the bundle's config.

After writing, each file passes ``onnx.checker`` (full check), and ONNX Runtime is compared with
torch on fresh random inputs and noise; the export FAILS (files removed, manifest untouched) when
the fp32 max abs error of the backbone, the action head or the whole chunk exceeds 1e-4.
fp16/bf16 graphs (for the strongly typed TensorRT engines) are written as
``onnx/{stage}.{precision}.onnx``; their parity is measured when the engines are built.

Large graphs (weights over ``external_data_threshold``, 1.8 GB by default; protobuf cannot hold
a file over 2 GB, so that is also the hard limit) keep their weights in ONE external-data file next
to the graph, ``{file}.data`` (``action_head.onnx`` -> ``action_head.onnx.data``). Everything that
reads the graphs (``onnx.checker``, ONNX Runtime, TensorRT's parser) is handed the file's path, so
it finds the data file; the manifest lists the data file with its own sha256 and size.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from lara_g1.core.errors import LaraError
from lara_g1.lara.manifest import Artifact, FileDigest, Manifest, ManifestError, TensorSpec
from lara_g1.policy_export.graphs import (
    BACKBONE_INPUTS,
    BACKBONE_OUTPUTS,
    HEAD_INPUTS,
    HEAD_OUTPUTS,
    BackboneGraph,
    DeployedActionHead,
)
from lara_g1.policy_export.parity import ONNX_FP32_TOLERANCE, onnx_parity, random_inputs

DEFAULT_OPSET = 17
# Graphs whose serialised size exceeds this many bytes keep their weights in one external-data file
# (``{file}.data``). 0 puts every graph's weights there (tests force it on the tiny preset).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
PROTOBUF_LIMIT = 2**31 - 1            # a serialised ModelProto cannot exceed this: external data above it
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_ONNX_DTYPES = {"FLOAT": "float32", "FLOAT16": "float16", "BFLOAT16": "bfloat16", "INT64": "int64",
                "INT32": "int32", "BOOL": "bool"}


class ExportError(LaraError, RuntimeError):
    """An export that failed its checks (onnx.checker, parity); nothing was recorded."""


def onnx_file_name(stage: str, precision: str) -> str:
    return f"{stage}.onnx" if precision == "fp32" else f"{stage}.{precision}.onnx"


def graph_io(model_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph inputs (initializers excluded) and outputs of an ONNX file, as TensorSpecs."""
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def spec(v: onnx.ValueInfoProto) -> TensorSpec:
        t = v.type.tensor_type
        dims = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim)
        return TensorSpec(v.name, _ONNX_DTYPES.get(onnx.TensorProto.DataType.Name(t.elem_type), "?"), dims)

    return ([spec(v) for v in model.graph.input if v.name not in inits], [spec(v) for v in model.graph.output])


def external_data_files(model_path: Path) -> list[str]:
    """Names of the external-data files an ONNX file references (graphs over the external-data threshold)."""
    model = onnx.load(str(model_path), load_external_data=False)
    names = set()
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in init.external_data if e.key == "location")
    return sorted(names)


def external_data_name(onnx_name: str) -> str:
    """The external-data file of the graph ``onnx_name``: ``action_head.onnx`` -> ``action_head.onnx.data``."""
    return f"{onnx_name}.data"


def export_module(module: torch.nn.Module, args: tuple, path: Path, inputs: tuple, outputs: tuple,
                  dynamic: dict[str, dict[int, str]], opset: int, full_check: bool = True,
                  external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """Export ``module`` traced on ``args`` to ``path`` and check it; returns the external-data
    file written next to it (graphs over ``external_data_threshold`` bytes), else None.

    torch writes into a private temporary folder next to ``path`` (over 2 GB its TorchScript
    exporter scatters one file per tensor there); the graph is then saved once, either as a single
    file or as ``path`` plus ``external_data_name(path.name)``, and checked from its path."""
    path = Path(path)
    data = path.with_name(external_data_name(path.name))
    for p in (path, data):
        p.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        raw = Path(tmp) / path.name
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(module, args, str(raw), input_names=list(inputs), output_names=list(outputs),
                              dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
            traced = module(*args)
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        model = onnx.load(str(raw))           # with any external data torch wrote
        _fix_output_dims(model, [traced] if isinstance(traced, torch.Tensor) else list(traced))
        del traced
        external = size > min(int(external_data_threshold), PROTOBUF_LIMIT - (16 << 20))
        if external:   # the tensors' bytes go to the data file one by one; the proto keeps offsets
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data.name, size_threshold=1024, convert_attribute=False)
            data.chmod(path.stat().st_mode & 0o777)   # onnx creates it 0600; readable like the graph
        else:
            onnx.save_model(model, str(path))
        del model
    onnx.checker.check_model(str(path), full_check=full_check)   # the path: the checker finds the data file
    return data if external else None


def _fix_output_dims(model: onnx.ModelProto, values: list[torch.Tensor]) -> None:
    """Write the outputs' fixed dimensions into the graph where the exporter left a generated
    symbol (e.g. the number of VL tokens behind a Cast): every dim but the batch is fixed."""
    for out, value in zip(model.graph.output, values):
        for i, dim in enumerate(out.type.tensor_type.shape.dim):
            if i > 0 and dim.dim_param:
                dim.dim_value = int(value.shape[i])   # setting the value clears the symbol


def export_action_head(policy: torch.nn.Module, embodiment_id: int, args: tuple, path: Path,
                       precision: str = "fp32", opset: int = DEFAULT_OPSET,
                       external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """The deployed action head of ``policy`` (anything with ``config`` and ``head``, e.g. a
    :class:`~lara_g1.lara.model.policy.LaraPolicy`) traced on ``args = (vl_features, state, noise)``.
    Returns the external-data file, if one was written."""
    module = DeployedActionHead(policy, embodiment_id, TORCH_DTYPES[precision]).eval()
    batch = {0: "batch"}
    # ONNX's type constraints predate bf16 for some ops (Conv): bf16 graphs get the structural
    # check, TensorRT (which runs them) checks the types when it parses them.
    return export_module(module, args, path, HEAD_INPUTS, HEAD_OUTPUTS, dict.fromkeys(HEAD_INPUTS + HEAD_OUTPUTS, batch),
                         opset, precision != "bf16", external_data_threshold)


def export_graphs(bundle, out_dir: Path, precision: str = "fp32", opset: int = DEFAULT_OPSET,
                  embodiment_id: int | None = None, trace_batch: int = 2,
                  external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> dict[str, Path]:
    """Write the two graphs of ``precision`` into ``out_dir`` (plus the external-data file of a
    graph over ``external_data_threshold`` bytes); returns ``{stage: path of the .onnx}``."""
    policy, cfg = bundle.policy, bundle.config
    dtype = TORCH_DTYPES[precision]
    eid = bundle.preprocessor.embodiment.embodiment_id if embodiment_id is None else embodiment_id
    inputs, noise = random_inputs(bundle.preprocessor, cfg.horizon, cfg.max_action_dim, trace_batch, seed=0)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    with torch.no_grad():
        feats = policy.backbone_features(t["pixel_values"], t["input_ids"], t["attention_mask"])
    paths = {"backbone": out_dir / onnx_file_name("backbone", precision),
             "action_head": out_dir / onnx_file_name("action_head", precision)}
    batch = {0: "batch"}
    full = precision != "bf16"   # see export_action_head
    export_module(BackboneGraph(policy, dtype).eval(), (t["pixel_values"], t["input_ids"], t["attention_mask"]),
                  paths["backbone"], BACKBONE_INPUTS, BACKBONE_OUTPUTS,
                  dict.fromkeys(BACKBONE_INPUTS + BACKBONE_OUTPUTS, batch), opset, full, external_data_threshold)
    export_action_head(policy, eid, (feats, t["state"], torch.from_numpy(noise)), paths["action_head"], precision,
                       opset, external_data_threshold)
    return paths


def onnx_artifact(bundle_dir: Path, stage: str, precision: str, path: Path, parity: dict) -> Artifact:
    inputs, outputs = graph_io(path)
    rel = path.relative_to(bundle_dir).as_posix()
    data = [FileDigest.of(bundle_dir, (path.parent / name).relative_to(bundle_dir).as_posix())
            for name in external_data_files(path)]
    return Artifact(stage=stage, format="onnx", precision=precision, file=FileDigest.of(bundle_dir, rel),
                    inputs=inputs, outputs=outputs, data_files=data, parity=parity)


def export_onnx(bundle_path: str | os.PathLike, precisions: tuple[str, ...] = ("fp32",), opset: int = DEFAULT_OPSET,
                embodiment: str | None = None, seed: int | None = None, parity_batch: int = 3,
                log: Callable[[str], None] = print,
                external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Manifest:
    """Export the bundle's graphs (fp32 always, plus any other ``precisions``), check them, write the
    manifest. Raises :class:`ExportError` when a check fails; the previous export stays as it was.

    The graphs are traced at batch 2 and checked at ``parity_batch`` (3): a graph whose batch axis
    is not really dynamic fails the check instead of failing later in serving. A graph over
    ``external_data_threshold`` bytes keeps its weights in ``{file}.data`` next to it (0: every graph)."""
    from lara_g1.lara.bundle import load_bundle

    bundle_dir = Path(bundle_path)
    bundle = load_bundle(bundle_dir)
    emb = bundle.preprocessor.embodiment
    if embodiment is not None and embodiment != emb.name:
        raise ExportError(f"the bundle is configured for embodiment {emb.name!r}, not {embodiment!r}; "
                          f"its preprocessing (layout, stats) is {emb.name!r}'s")
    unknown = sorted(set(precisions) - set(TORCH_DTYPES))
    if unknown:
        raise ExportError(f"unknown precision {unknown}; use fp32, fp16 or bf16")
    out_dir = bundle_dir / "onnx"
    staging = bundle_dir / ".onnx.partial"
    if staging.exists():
        _remove_tree(staging)
    staging.mkdir()
    try:
        written: dict[tuple[str, str], Path] = {}
        for precision in ("fp32", *[p for p in precisions if p != "fp32"]):
            log(f"exporting {precision} graphs (opset {opset}, embodiment {emb.name} id {emb.embodiment_id})")
            for stage, p in export_graphs(bundle, staging, precision, opset, emb.embodiment_id,
                                          external_data_threshold=external_data_threshold).items():
                written[(stage, precision)] = p
        report = onnx_parity(bundle.policy, bundle.preprocessor, written[("backbone", "fp32")],
                             written[("action_head", "fp32")], batch=parity_batch, seed=seed)
        log(f"parity ONNX Runtime vs torch (fp32, max abs error, fresh random inputs): backbone "
            f"{report.backbone:.2e}, action head {report.action_head:.2e}, whole chunk {report.chunk:.2e} "
            f"(tolerance {ONNX_FP32_TOLERANCE:g})")
        if not report.worst() <= ONNX_FP32_TOLERANCE:
            raise ExportError(f"ONNX parity check failed: max abs error {report.worst():.3g} exceeds "
                              f"{ONNX_FP32_TOLERANCE:g} (backbone {report.backbone:.3g}, action head "
                              f"{report.action_head:.3g}, chunk {report.chunk:.3g}); nothing was written")
        # the checks passed: move the files into onnx/ and record them
        out_dir.mkdir(exist_ok=True)
        fresh = {p.name for p in staging.iterdir()}
        for p in staging.iterdir():
            os.replace(p, out_dir / p.name)
        for p in out_dir.glob("*.onnx*"):   # graphs (and data files) of an earlier export that this one does not repeat
            if p.name not in fresh and p.is_file():
                p.unlink()
    finally:
        _remove_tree(staging)
    parity = report.to_dict(ONNX_FP32_TOLERANCE)
    manifest = _fresh_manifest(bundle, bundle_dir, opset)
    manifest.parity = {"onnx_fp32": parity}
    for precision in sorted({p for _, p in written} - {"fp32"}):
        manifest.parity[f"onnx_{precision}"] = _low_precision_parity(
            bundle, out_dir / written[("backbone", precision)].name, out_dir / written[("action_head", precision)].name,
            parity_batch, seed, log)
    for (stage, precision), p in written.items():
        manifest.add(onnx_artifact(bundle_dir, stage, precision, out_dir / p.name,
                               manifest.parity[f"onnx_{precision}"]))
    manifest.export["precisions"] = sorted({p for _, p in written})
    manifest.export["external_data_threshold_bytes"] = int(external_data_threshold)
    manifest.save(bundle_dir)
    data = sorted(f"{d.path} ({d.bytes / 1e9:.2f} GB)" for a in manifest.artifacts.values() for d in a.data_files)
    log(f"wrote {', '.join(sorted(str(out_dir / p.name) for p in written.values()))} and {bundle_dir / 'manifest.json'}"
        + (f"; external data: {', '.join(data)}" if data else ""))
    return manifest


def _low_precision_parity(bundle, backbone: Path, head: Path, batch: int, seed: int | None,
                          log: Callable[[str], None]) -> dict:
    """fp16/bf16 graphs on ONNX Runtime CPU against torch fp32, where ORT's CPU kernels cover them
    (informational: the gate for these graphs is the TensorRT build's parity check)."""
    try:
        report = onnx_parity(bundle.policy, bundle.preprocessor, backbone, head, batch=batch, seed=seed)
    except Exception as e:  # noqa: BLE001 - ORT's CPU provider lacks many bf16 kernels; record why
        log(f"{head.name}: not runnable on ONNX Runtime CPU ({str(e).splitlines()[0][:160]}); "
            f"its parity is measured when the TensorRT engines are built")
        return {"onnxruntime_cpu": f"not runnable: {str(e).splitlines()[0][:160]}",
                "measured": "when the TensorRT engines are built"}
    log(f"{head.name} on ONNX Runtime CPU vs torch fp32: whole chunk max abs error {report.chunk:.2e}")
    return {**report.to_dict(tolerance=float("nan")), "tolerance": "checked when the TensorRT engines are built"}


def _fresh_manifest(bundle, bundle_dir: Path, opset: int) -> Manifest:
    """A manifest for this bundle; TensorRT engines of an earlier export of the same model are kept."""
    import onnxruntime

    cfg, emb = bundle.config, bundle.preprocessor.embodiment
    manifest = Manifest(
        model_id=bundle.model_id, embodiment=emb.name, embodiment_id=int(emb.embodiment_id),
        horizon=int(cfg.horizon), denoising_steps=int(cfg.denoising_steps), max_action_dim=int(cfg.max_action_dim),
        max_state_dim=int(cfg.max_state_dim), opset=opset,
        export={"exporter": "torch.onnx.export (TorchScript, dynamo=False)", "do_constant_folding": True,
                "dynamic_axes": {"batch": 0}, "torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "action_head": "Euler loop unrolled, timestep constants precomputed, one embodiment's weights, "
                               "cross-attention keys/values computed once per chunk"})
    try:
        old = Manifest.load(bundle_dir)
    except ManifestError:
        return manifest
    if old.model_id == manifest.model_id and old.opset == opset:
        for art in old.artifacts.values():
            if art.format == "trt":
                manifest.add(art)
    return manifest


def _remove_tree(path: Path) -> None:
    """The staging folder, with any temporary folder an interrupted export left in it."""
    if path.is_dir():
        shutil.rmtree(path)
