"""The export manifest: what was exported, how, with which checksums and which measured parity.

``lara-export`` writes ``manifest.json`` at the root of the bundle (docs/POLICY.md, "The policy bundle"). It lists every
exported artifact (ONNX graphs, TensorRT engines) with its path inside the bundle, its sha256,
its size, the names, dtypes and shapes of its inputs and outputs, and how it was produced. The
engines read it back and verify the files against it before loading anything, so a stale,
truncated or swapped file is refused with a message instead of silently serving another model.

Shapes hold ints for fixed dimensions and strings for symbolic ones (``"batch"``).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lara_g1.core.errors import LaraError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
STAGES = ("backbone", "action_head")
PRECISIONS = ("fp32", "fp16", "bf16")


class ManifestError(LaraError, ValueError):
    """A manifest that is missing, malformed, or does not match the files of its bundle."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                       # numpy dtype name: float32, int64, float16, bfloat16
    shape: tuple[int | str, ...]     # ints are fixed dims, strings symbolic ("batch")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["shape"]))

    def describe(self) -> str:
        return f"{self.name} {self.dtype}[{', '.join(str(s) for s in self.shape)}]"


@dataclass(frozen=True)
class FileDigest:
    path: str       # relative to the bundle root, POSIX separators
    sha256: str
    bytes: int

    @classmethod
    def of(cls, bundle: Path, rel: str) -> "FileDigest":
        p = bundle / rel
        return cls(rel, sha256_file(p), p.stat().st_size)


@dataclass
class Artifact:
    """One exported file (plus any external-data files it references)."""

    stage: str                       # "backbone" | "action_head"
    format: str                      # "onnx" | "trt"
    precision: str                   # "fp32" | "fp16" | "bf16"
    file: FileDigest
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    data_files: list[FileDigest] = field(default_factory=list)
    build: dict[str, Any] = field(default_factory=dict)    # TRT: gpu_name, compute_capability, trt_version, profile
    parity: dict[str, Any] = field(default_factory=dict)   # max_abs_error against torch fp32, tolerance

    @property
    def key(self) -> str:
        return artifact_key(self.stage, self.format, self.precision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "format": self.format, "precision": self.precision,
            "file": asdict(self.file), "data_files": [asdict(f) for f in self.data_files],
            "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
            "build": self.build, "parity": self.parity,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Artifact":
        return cls(
            stage=d["stage"], format=d["format"], precision=d["precision"],
            file=FileDigest(**d["file"]), data_files=[FileDigest(**f) for f in d.get("data_files", [])],
            inputs=[TensorSpec.from_dict(t) for t in d["inputs"]],
            outputs=[TensorSpec.from_dict(t) for t in d["outputs"]],
            build=dict(d.get("build", {})), parity=dict(d.get("parity", {})),
        )


def artifact_key(stage: str, fmt: str, precision: str) -> str:
    return f"{fmt}/{stage}/{precision}"


@dataclass
class Manifest:
    model_id: str
    embodiment: str
    embodiment_id: int
    horizon: int
    denoising_steps: int
    max_action_dim: int              # the model's padded widths (PolicyConfig.max_action_dim, max_state_dim);
    max_state_dim: int               # in manifest.json under "action_dim" and "state_dim"
    opset: int
    export: dict[str, Any] = field(default_factory=dict)   # exporter, versions, created_utc, settings
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)   # ONNX fp32 parity: backbone, action_head, chunk
    format_version: int = FORMAT_VERSION

    # ---- lookup -----------------------------------------------------------------------------
    def add(self, artifact: Artifact) -> None:
        self.artifacts[artifact.key] = artifact

    def get(self, stage: str, fmt: str, precision: str) -> Artifact:
        key = artifact_key(stage, fmt, precision)
        if key not in self.artifacts:
            have = sorted(self.artifacts) or ["nothing"]
            hint = "lara-export BUNDLE --trt --precision " + precision if fmt == "trt" else "lara-export BUNDLE --onnx"
            raise ManifestError(f"the manifest lists no {fmt} {precision} {stage} (it has: {', '.join(have)}); "
                                f"run `{hint}`")
        return self.artifacts[key]

    # ---- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version, "model_id": self.model_id,
            "embodiment": self.embodiment, "embodiment_id": self.embodiment_id,
            "horizon": self.horizon, "denoising_steps": self.denoising_steps,
            "action_dim": self.max_action_dim, "state_dim": self.max_state_dim, "opset": self.opset,
            "export": self.export, "parity": self.parity,
            "artifacts": {k: a.to_dict() for k, a in sorted(self.artifacts.items())},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ManifestError(f"manifest format_version {version!r} is not supported (this lara-g1 reads "
                                f"{FORMAT_VERSION}); re-export with `lara-export BUNDLE --onnx`")
        try:
            m = cls(
                model_id=str(d["model_id"]), embodiment=str(d["embodiment"]), embodiment_id=int(d["embodiment_id"]),
                horizon=int(d["horizon"]), denoising_steps=int(d["denoising_steps"]),
                max_action_dim=int(d["action_dim"]), max_state_dim=int(d["state_dim"]), opset=int(d["opset"]),
                export=dict(d.get("export", {})), parity=dict(d.get("parity", {})),
            )
            for a in d.get("artifacts", {}).values():
                m.add(Artifact.from_dict(a))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"malformed manifest: {type(e).__name__}: {e}") from e
        return m

    def save(self, bundle: str | os.PathLike) -> Path:
        """Write ``manifest.json`` atomically (a crash leaves the old manifest or the new one)."""
        path = Path(bundle) / MANIFEST_NAME
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, bundle: str | os.PathLike) -> "Manifest":
        path = Path(bundle) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{path} does not exist: the bundle has not been exported; "
                                f"run `lara-export {bundle} --onnx`")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(d, dict):
            raise ManifestError(f"{path} must hold a JSON object")
        return cls.from_dict(d)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_files(bundle: str | os.PathLike, artifact: Artifact) -> None:
    """Check that the artifact's files exist with the recorded sizes and sha256; raise ManifestError."""
    bundle = Path(bundle)
    for digest in [artifact.file, *artifact.data_files]:
        p = bundle / digest.path
        what = f"{artifact.format} {artifact.precision} {artifact.stage} file {p}"
        if not p.is_file():
            raise ManifestError(f"{what} is listed in the manifest but missing; re-run lara-export")
        size = p.stat().st_size
        if size != digest.bytes:
            raise ManifestError(f"{what} has {size} bytes, the manifest says {digest.bytes}: the file was "
                                f"changed or truncated after export; re-run lara-export")
        if sha256_file(p) != digest.sha256:
            raise ManifestError(f"{what} does not match the sha256 in the manifest: the file was changed after "
                                f"export; re-run lara-export")


def check_io(artifact: Artifact, inputs: list[TensorSpec], outputs: list[TensorSpec], source: str) -> None:
    """Compare the I/O a loaded graph/engine reports (``source`` names it) with the manifest's."""
    for kind, want, got in (("inputs", artifact.inputs, inputs), ("outputs", artifact.outputs, outputs)):
        w = [t.describe() for t in want]
        g = [t.describe() for t in got]
        if w != g:
            raise ManifestError(f"{source} {kind} do not match the manifest for {artifact.key}: "
                                f"manifest {w}, file {g}; re-run lara-export")
