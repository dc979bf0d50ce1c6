"""A checkpoint directory as Hugging Face stores it, read lazily.

``config.json`` plus either ``model.safetensors`` or shards listed in
``model.safetensors.index.json``. Names and shapes come from the safetensors headers without
reading any tensor, so an importer can check the whole mapping before it loads a byte;
:meth:`HFCheckpoint.stream` then yields tensors one at a time, shard by shard, upcast to fp32,
so the peak memory of an import is the target model plus one tensor.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lara_g1.core.errors import LaraError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(LaraError, ValueError):
    """A checkpoint that cannot be imported; the message names the file, key and shapes."""


@dataclass(frozen=True)
class TensorInfo:
    shard: Path
    shape: tuple[int, ...]
    dtype: str


class HFCheckpoint:
    """The config and the tensor table of a checkpoint directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path}: no checkpoint directory there")
        self.config = self._read_json(self.path / "config.json", "the model config")
        self.tensors = self._table()

    @staticmethod
    def _read_json(path: Path, what: str) -> dict[str, Any]:
        if not path.is_file():
            raise CheckpointError(f"{path}: missing ({what})")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({what}): {exc}") from exc
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: expected a JSON object ({what})")
        return raw

    def _shards(self) -> list[Path]:
        index = self.path / INDEX_FILE
        if index.is_file():
            weight_map = self._read_json(index, "the shard index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index}: no 'weight_map'")
            shards = sorted({self.path / name for name in weight_map.values()})
            missing = [s.name for s in shards if not s.is_file()]
            if missing:
                raise CheckpointError(f"{index}: lists shards that are not there: {missing}")
            return shards
        if (self.path / SINGLE_FILE).is_file():
            return [self.path / SINGLE_FILE]
        raise CheckpointError(f"{self.path}: neither {SINGLE_FILE} nor {INDEX_FILE}")

    def _table(self) -> dict[str, TensorInfo]:
        from safetensors import SafetensorError, safe_open

        table: dict[str, TensorInfo] = {}
        for shard in self._shards():
            try:
                with safe_open(str(shard), "pt") as f:
                    for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                        if name in table:
                            raise CheckpointError(f"{shard}: tensor {name!r} is also in {table[name].shard.name}")
                        sl = f.get_slice(name)
                        table[name] = TensorInfo(shard, tuple(sl.get_shape()), sl.get_dtype())
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{shard}: not a readable safetensors file: {exc}") from exc
        return table

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def stream(self, names: set[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, fp32 tensor)`` for ``names`` (default: all), one shard open at a time."""
        from safetensors import safe_open

        wanted = set(self.tensors) if names is None else set(names)
        by_shard: dict[Path, list[str]] = {}
        for name in sorted(wanted):
            by_shard.setdefault(self.tensors[name].shard, []).append(name)
        for shard, shard_names in by_shard.items():
            with safe_open(str(shard), "pt") as f:
                for name in shard_names:
                    t = f.get_tensor(name)
                    yield name, (t.float() if t.is_floating_point() else t)

    def nbytes(self, names: set[str]) -> int:
        sizes = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4}
        total = 0
        for name in names:
            info = self.tensors[name]
            n = 1
            for d in info.shape:
                n *= d
            total += n * sizes.get(info.dtype, 4)
        return total
