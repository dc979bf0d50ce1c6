"""ONNX export of the tiny preset: parity against torch, graph contents, the manifest and its checks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lara_g1.lara.bundle import create_random_bundle, load_bundle
from lara_g1.lara.manifest import Manifest, ManifestError, sha256_file
from lara_g1.policy_export import onnx_export
from lara_g1.policy_export.cli import main as export_main
from lara_g1.policy_export.onnx_export import ExportError, export_onnx, graph_io
from lara_g1.policy_export.parity import ONNX_FP32_TOLERANCE, onnx_parity, random_inputs
from lara_g1.runtime.engines import load_engine
from lara_g1.runtime.engines.ort_engine import session_io


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = create_random_bundle(tmp_path_factory.mktemp("export") / "tiny", preset="tiny", seed=3)
    export_onnx(path, precisions=("fp32", "fp16"), log=lambda _: None)
    return path


@pytest.fixture(scope="module")
def bundle(exported):
    return load_bundle(exported)


def _copy(exported, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(exported, dst)
    return dst


def test_ort_matches_torch_on_fresh_random_inputs(exported, bundle):
    """fp32 parity of backbone, action head and whole chunk, each within 1e-4, new inputs each run."""
    report = onnx_parity(bundle.policy, bundle.preprocessor, exported / "onnx/backbone.onnx",
                         exported / "onnx/action_head.onnx", batch=3, seed=None)
    assert report.backbone <= ONNX_FP32_TOLERANCE
    assert report.action_head <= ONNX_FP32_TOLERANCE
    assert report.chunk <= ONNX_FP32_TOLERANCE
    # the inputs really are fresh: two unseeded draws differ
    a, na = random_inputs(bundle.preprocessor, 8, 32, 2, seed=None)
    b, nb = random_inputs(bundle.preprocessor, 8, 32, 2, seed=None)
    assert not np.array_equal(a["state"], b["state"]) and not np.array_equal(na, nb)


def test_files_pass_the_checker_and_the_manifest_records_them(exported):
    m = Manifest.load(exported)
    assert (m.embodiment, m.horizon, m.denoising_steps, m.max_action_dim, m.opset) == ("g1", 8, 4, 32, 17)
    assert m.parity["onnx_fp32"]["chunk_max_abs_error"] <= ONNX_FP32_TOLERANCE
    for key, art in m.artifacts.items():
        path = exported / art.file.path
        onnx.checker.check_model(str(path), full_check=True)
        assert sha256_file(path) == art.file.sha256 and path.stat().st_size == art.file.bytes, key
        assert graph_io(path) == (art.inputs, art.outputs), key
    head = m.get("action_head", "onnx", "fp32")
    assert [t.describe() for t in head.inputs] == [
        "vl_features float32[batch, 65, 128]", "state float32[batch, 64]", "noise float32[batch, 8, 32]"]
    assert [t.describe() for t in head.outputs] == ["actions float32[batch, 8, 32]"]
    assert m.get("backbone", "onnx", "fp16").inputs == m.get("backbone", "onnx", "fp32").inputs


def test_action_head_graph_is_unrolled_for_one_embodiment(exported, bundle):
    graph = onnx.load(str(exported / "onnx/action_head.onnx")).graph
    ops = [n.op_type for n in graph.node]
    # timestep embeddings are constants: no sinusoid is computed in the graph
    assert "Sin" not in ops and "Cos" not in ops
    # no loop construct: the 4 Euler steps are unrolled
    assert "Loop" not in ops and "Scan" not in ops
    # only the deployed embodiment's slice: no initializer holds all embodiments' rows
    per_embodiment = {tuple(p.shape) for n, p in bundle.policy.head.named_parameters()
                      if p.dim() >= 2 and p.shape[0] == bundle.config.num_embodiments and "weight" in n}
    init_shapes = {tuple(i.dims) for i in graph.initializer}
    assert per_embodiment and not (per_embodiment & init_shapes)
    total = sum(int(np.prod(i.dims)) for i in graph.initializer)
    assert total < sum(p.numel() for p in bundle.policy.head.parameters()) / 4


def test_exported_graph_io_matches_the_manifest(exported):
    import onnxruntime as ort

    m = Manifest.load(exported)
    for stage in ("backbone", "action_head"):
        art = m.get(stage, "onnx", "fp32")
        sess = ort.InferenceSession(str(exported / art.file.path), providers=["CPUExecutionProvider"])
        assert session_io(sess) == (art.inputs, art.outputs)


def test_changed_file_is_refused(exported, tmp_path):
    b = _copy(exported, tmp_path)
    path = b / "onnx/action_head.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_engine(b, "ort")


def test_manifest_io_that_does_not_match_the_graph_is_refused(exported, tmp_path):
    b = _copy(exported, tmp_path)
    raw = json.loads((b / "manifest.json").read_text())
    raw["artifacts"]["onnx/action_head/fp32"]["inputs"][2]["name"] = "flow_noise"
    (b / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="inputs do not match the manifest"):
        load_engine(b, "ort")


def test_missing_file_and_foreign_export_are_refused(exported, tmp_path):
    b = _copy(exported, tmp_path)
    (b / "onnx/backbone.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        load_engine(b, "ort")
    b2 = tmp_path / "other"
    create_random_bundle(b2, preset="tiny", seed=4)          # another model ...
    shutil.copytree(exported / "onnx", b2 / "onnx")         # ... with this model's export
    shutil.copy(exported / "manifest.json", b2 / "manifest.json")
    with pytest.raises(ManifestError, match="another model"):
        load_engine(b2, "ort")


def test_unexported_bundle_says_to_export(tmp_path):
    b = create_random_bundle(tmp_path / "fresh", preset="tiny", seed=5)
    with pytest.raises(ManifestError, match="lara-export"):
        load_engine(b, "ort")


def test_failed_parity_writes_nothing(exported, tmp_path, monkeypatch):
    b = _copy(exported, tmp_path)
    before = {p.name: sha256_file(p) for p in (b / "onnx").iterdir()}
    manifest_before = (b / "manifest.json").read_text()
    monkeypatch.setattr(onnx_export, "ONNX_FP32_TOLERANCE", -1.0)   # any measured error now fails
    with pytest.raises(ExportError, match="parity check failed"):
        export_onnx(b, log=lambda _: None)
    assert (b / "manifest.json").read_text() == manifest_before
    assert {p.name: sha256_file(p) for p in (b / "onnx").iterdir()} == before
    assert not (b / ".onnx.partial").exists()


def test_cli_refuses_other_embodiment_and_missing_tensorrt(exported, tmp_path, capsys):
    b = _copy(exported, tmp_path)
    assert export_main([str(b), "--embodiment", "h1"]) == 1
    assert "embodiment" in capsys.readouterr().err
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert export_main([str(b), "--trt"]) == 1
        assert "pip install 'lara-g1[trt]'" in capsys.readouterr().err


def test_external_data_files_are_checksummed(exported, tmp_path):
    """Graphs over 2 GB keep their weights in external files; those are listed and verified too."""
    from lara_g1.lara.manifest import verify_files
    from lara_g1.policy_export.onnx_export import onnx_artifact

    b = _copy(exported, tmp_path)
    model = onnx.load(str(b / "onnx/action_head.onnx"))
    onnx.save_model(model, str(b / "onnx/action_head.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="action_head.onnx.data", size_threshold=1024)
    art = onnx_artifact(b, "action_head", "fp32", b / "onnx/action_head.onnx", parity={})
    assert [d.path for d in art.data_files] == ["onnx/action_head.onnx.data"]
    verify_files(b, art)
    data = bytearray((b / "onnx/action_head.onnx.data").read_bytes())
    data[100] ^= 0x01
    (b / "onnx/action_head.onnx.data").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="action_head.onnx.data"):
        verify_files(b, art)


def test_alternating_text_image_cross_attention_exports_and_matches_torch(tmp_path):
    """GR00T N1.6's head layout (image mask packed beside the pad mask) on the stand-in backbone, as
    bench/gpu_check.py's gr00t_n16 row builds it: ORT against torch, with padded instructions."""
    path = create_random_bundle(tmp_path / "n16", preset="tiny", seed=3, mask_vl_padding=True,
                                vl_cross_attention="alternate", adapter_layers=0, horizon=16, action_steps=8)
    assert export_main([str(path), "--onnx", "--seed", "0"]) == 0
    b = load_bundle(path)
    inputs, noise = random_inputs(b.preprocessor, 16, 32, 2, seed=4)
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    vl = b.policy.backbone_features(t["pixel_values"], t["input_ids"], t["attention_mask"])
    assert vl.shape[-1] == b.config.vl_dim + 2 and torch.equal(vl[0, :4, -1], torch.ones(4))   # patches: image
    head = ort.InferenceSession(str(path / "onnx" / "action_head.onnx"), providers=["CPUExecutionProvider"])
    got = head.run(None, {"vl_features": vl.detach().numpy(), "state": inputs["state"], "noise": noise})[0]
    with torch.no_grad():
        ref = b.policy.sample(vl, t["state"], t["embodiment_id"], torch.from_numpy(noise)).numpy()
    assert np.abs(got - ref).max() < 1e-4
