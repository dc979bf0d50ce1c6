"""Lazy imports of the optional heavy dependencies, with an error that names the extra.

``tensorrt``, ``cuda-python`` and ``onnxruntime-gpu`` are not installed by default (they need an
NVIDIA GPU); the engines and the exporter import them through :func:`require` only when asked for
TensorRT or CUDA, so everything else works without them.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from lara_g1.core.errors import LaraError


class MissingExtraError(LaraError, ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install 'lara-g1[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{purpose} needs the Python module {module!r}, which is not installed ({e}). "
            f"Install it with: pip install 'lara-g1[{extra}]'"
        ) from e


def cuda_runtime() -> ModuleType:
    """The CUDA runtime bindings of cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return require("cuda.cudart", "trt", "TensorRT inference (CUDA runtime)")
