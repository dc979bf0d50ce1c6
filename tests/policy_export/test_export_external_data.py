"""Graphs with external data (the full-size head's weights do not fit a 2 GB protobuf), forced on the
tiny preset with ``external_data_threshold=0``: checked from the path, served by ONNX Runtime,
listed in the manifest, carried by the deploy copy; TensorRT is handed the path, never bytes."""
from __future__ import annotations

import shutil
import types
from pathlib import Path

import numpy as np
import onnx
import pytest

from lara_g1.core.observation import Observation, make_noise
from lara_g1.lara.bundle import create_random_bundle
from lara_g1.lara.manifest import Manifest, ManifestError, TensorSpec, sha256_file
from lara_g1.policy_export import trt_build
from lara_g1.policy_export.deploy import write_deployment
from lara_g1.policy_export.onnx_export import export_onnx, external_data_files, external_data_name
from lara_g1.policy_export.parity import ONNX_FP32_TOLERANCE
from lara_g1.policy_export.trt_session import TrtError
from lara_g1.runtime.engines import load_engine

GRAPHS = ("backbone.onnx", "action_head.onnx", "backbone.fp16.onnx", "action_head.fp16.onnx")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    path = create_random_bundle(tmp_path_factory.mktemp("external") / "tiny", preset="tiny", seed=7)
    export_onnx(path, precisions=("fp32", "fp16"), seed=0, log=lambda _: None, external_data_threshold=0)
    return path


def _observation(seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(images={"head": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)},
                       state=rng.uniform(-0.5, 0.5, 28).astype(np.float32), instruction="pick")


def test_every_graph_keeps_its_weights_in_one_data_file_listed_in_the_manifest(exported):
    m = Manifest.load(exported)
    assert m.export["external_data_threshold_bytes"] == 0
    for name in GRAPHS:
        graph, data = exported / "onnx" / name, exported / "onnx" / external_data_name(name)
        assert external_data_files(graph) == [data.name], name
        # the weights are in the data file: the graph itself is a small fraction of it
        assert data.stat().st_size > 5 * graph.stat().st_size, name
        onnx.checker.check_model(str(graph), full_check=True)
        stage, precision = name.split(".")[0], "fp16" if ".fp16." in name else "fp32"
        art = m.get(stage, "onnx", precision)
        assert [d.path for d in art.data_files] == [f"onnx/{data.name}"]
        assert art.data_files[0].sha256 == sha256_file(data) and art.data_files[0].bytes == data.stat().st_size
    # the data file is readable like the graph (onnx creates it 0600)
    assert (exported / "onnx/action_head.onnx.data").stat().st_mode & 0o777 == \
        (exported / "onnx/action_head.onnx").stat().st_mode & 0o777


def test_onnx_runtime_loads_them_from_the_path_and_matches_torch(exported):
    # the export's own gate ran ORT on these files (fresh inputs, batch 3) ...
    parity = Manifest.load(exported).parity["onnx_fp32"]
    assert max(parity[k] for k in ("backbone_max_abs_error", "action_head_max_abs_error",
                                   "chunk_max_abs_error")) <= ONNX_FP32_TOLERANCE
    # ... and the ort engine serves them from the bundle: same chunks as torch
    noise = make_noise(2, 8, 32, seed=4)
    obs = [_observation(1), _observation(2)]
    want = load_engine(exported, "torch").infer(obs, noise).actions
    got = load_engine(exported, "ort", provider="cpu", threads=1).infer(obs, noise).actions
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_a_default_export_writes_single_files_and_removes_stale_data_files(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    m = export_onnx(copy, seed=0, log=lambda _: None)       # default threshold: tiny is far below it
    assert sorted(p.name for p in (copy / "onnx").iterdir()) == ["action_head.onnx", "backbone.onnx"]
    assert all(not a.data_files for a in m.artifacts.values())
    assert external_data_files(copy / "onnx/action_head.onnx") == []


def test_the_deploy_copy_carries_the_data_files_and_serves_from_them(exported, tmp_path):
    out = write_deployment(exported, tmp_path / "deployed")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for name in GRAPHS:
        assert f"onnx/{name}" in files and f"onnx/{external_data_name(name)}" in files
    noise = make_noise(1, 8, 32, seed=9)
    want = load_engine(exported, "ort", provider="cpu", threads=1).infer([_observation(3)], noise).actions
    got = load_engine(out, "ort", provider="cpu", threads=1).infer([_observation(3)], noise).actions
    np.testing.assert_array_equal(got, want)


def test_a_missing_data_file_is_refused_with_its_name(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "onnx/action_head.onnx.data").unlink()
    for attempt in (lambda: write_deployment(broken, tmp_path / "d"), lambda: load_engine(broken, "ort")):
        with pytest.raises(ManifestError, match=r"action_head\.onnx\.data is listed in the manifest but missing"):
            attempt()
    assert not (tmp_path / "d").exists()


class _FakeTensorRT(types.SimpleNamespace):
    """The tensorrt module at its API boundary: records what the ONNX parser is handed."""

    def __init__(self, parse_ok: bool = True):
        calls: dict = {"parse_from_file": [], "profile": {}}

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                assert isinstance(path, str)
                calls["parse_from_file"].append(path)
                # TensorRT resolves external data next to the file; prove it is there
                calls["data_present"] = all((Path(path).parent / n).is_file() for n in external_data_files(Path(path)))
                return parse_ok

            def parse(self, model_bytes, path=None):
                raise AssertionError("the graph must be parsed from its path, not from bytes")

            def get_error(self, i):
                return "fake parse error"

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                calls["profile"][name] = (lo, opt, hi)

        class Config:
            def set_memory_pool_limit(self, pool, size):
                pass

            def add_optimization_profile(self, profile):
                pass

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"serialized engine"

        super().__init__(
            Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
            Builder=Builder, OnnxParser=Parser, calls=calls,
            NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
            MemoryPoolType=types.SimpleNamespace(WORKSPACE=0))


def test_tensorrt_parses_the_graph_from_its_path_next_to_its_data_file(exported, tmp_path, monkeypatch):
    fake = _FakeTensorRT()
    monkeypatch.setattr(trt_build, "require", lambda module, extra, purpose: fake)
    graph = exported / "onnx/action_head.fp16.onnx"
    inputs = Manifest.load(exported).get("action_head", "onnx", "fp16").inputs
    engine = tmp_path / "action_head.engine"
    trt_build.build_engine(graph, engine, inputs, max_batch=4)
    assert fake.calls["parse_from_file"] == [str(graph)] and fake.calls["data_present"]
    assert engine.read_bytes() == b"serialized engine"
    assert fake.calls["profile"]["noise"] == ((1, 8, 32), (1, 8, 32), (4, 8, 32))

    failing = _FakeTensorRT(parse_ok=False)
    monkeypatch.setattr(trt_build, "require", lambda module, extra, purpose: failing)
    with pytest.raises(TrtError, match="could not parse .*fake parse error"):
        trt_build.build_engine(graph, tmp_path / "other.engine", inputs)


def test_tensorrt_is_not_handed_a_graph_whose_data_file_is_missing(exported, tmp_path, monkeypatch):
    fake = _FakeTensorRT()
    monkeypatch.setattr(trt_build, "require", lambda module, extra, purpose: fake)
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    shutil.copy2(exported / "onnx/action_head.onnx", onnx_dir / "action_head.onnx")   # without its .data
    with pytest.raises(TrtError, match=r"action_head\.onnx\.data.*missing"):
        trt_build.build_engine(onnx_dir / "action_head.onnx", tmp_path / "e.engine",
                               [TensorSpec("noise", "float32", ("batch", 8, 32))])
    assert fake.calls["parse_from_file"] == []
