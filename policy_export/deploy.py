"""A serving-only copy of an exported bundle (``lara-export BUNDLE --deploy DIR``).

What the ``ort`` and ``trt`` engines read, and nothing else: ``config.json``, ``stats.json``,
``tokenizer/`` (Eagle backbones), ``manifest.json`` and the exported files the manifest lists (a
large graph with its external-data file, ``onnx/action_head.onnx`` + ``onnx/action_head.onnx.data``).
No torch weights, no LAM, no checkpoints or training logs: the tiny preset's bundle goes from
~150 MB with its last checkpoint to ~8 MB, small enough to copy to a robot's GPU box or to ship
inside the package (``lara/policies``). The copy is written to a temporary directory, every file
checked against the manifest's sha256, then renamed into place; an existing ``DIR`` is replaced
only when it is itself a deployment (it holds ``manifest.json`` and no ``model.safetensors``).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lara_g1.core.errors import LaraError
from lara_g1.lara.manifest import MANIFEST_NAME, Manifest, verify_files

SERVING_FILES = ("config.json", "stats.json")
SERVING_DIRS = ("tokenizer",)


class DeployError(LaraError, ValueError):
    pass


def _is_deployment(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file() and not (path / "model.safetensors").exists()


def write_deployment(bundle: str | Path, out: str | Path) -> Path:
    """Copy ``bundle``'s serving files to ``out``; returns ``out``."""
    bundle, out = Path(bundle), Path(out)
    manifest = Manifest.load(bundle)
    if not manifest.artifacts:
        raise DeployError(f"{bundle / MANIFEST_NAME} lists no exported files; run `lara-export {bundle} --onnx`")
    if out.resolve() == bundle.resolve():
        raise DeployError(f"--deploy {out} is the bundle itself; choose another directory")
    if out.exists() and not _is_deployment(out):
        raise DeployError(f"{out} exists and is not a deployment written by lara-export --deploy; "
                          f"refusing to replace it (remove it or choose another directory)")
    for artifact in manifest.artifacts.values():
        verify_files(bundle, artifact)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in SERVING_FILES:
            if not (bundle / name).is_file():
                raise DeployError(f"{bundle / name}: missing; is {bundle} a policy bundle?")
            shutil.copy2(bundle / name, tmp / name)
        for name in SERVING_DIRS:
            if (bundle / name).is_dir():
                shutil.copytree(bundle / name, tmp / name)
        for artifact in manifest.artifacts.values():
            for digest in (artifact.file, *artifact.data_files):
                (tmp / digest.path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(bundle / digest.path, tmp / digest.path)
            verify_files(tmp, artifact)
        manifest.save(tmp)
        tmp.chmod(0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
