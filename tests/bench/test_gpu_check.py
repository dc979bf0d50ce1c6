"""bench/gpu_check.py: its arguments, its refusal without a GPU, and its CPU rows on the tiny preset
written into a copy of docs/BENCHMARKS.md (the same measurement code the GPU run uses)."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("_lara_bench_gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("argv, message", [
    (["--presets", "tiny,huge"], "unknown preset 'huge'; choose from tiny, small, paper"),
    (["--engines", "torch,tvm"], "unknown engine 'tvm'"),
    (["--batch", "1,eight"], "not a comma-separated list of integers"),
    (["--batch", "0"], "batch sizes must be >= 1"),
    (["--device", "cpu", "--engines", "torch,ort,trt"], "--engines trt needs --device cuda"),
])
def test_bad_arguments_are_refused_with_exit_status_2(gpu_check, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_a_gpu_it_says_so_and_exits_non_zero_unless_device_cpu(gpu_check, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: None)      # the hardware boundary: no NVIDIA GPU
    docs = tmp_path / "BENCHMARKS.md"
    docs.write_text("# Benchmarks\n")
    code = gpu_check.main(["--presets", "tiny", "--out", str(tmp_path / "out"), "--docs", str(docs)])
    assert code == 3
    err = capsys.readouterr().err
    assert "no NVIDIA GPU found" in err and "--device cpu" in err
    assert docs.read_text() == "# Benchmarks\n" and not (tmp_path / "out").exists()


def test_update_docs_replaces_its_own_section_and_keeps_the_rest(gpu_check, tmp_path):
    docs = tmp_path / "B.md"
    docs.write_text("# Title\n\nintro\n")

    def block(key: str, text: str) -> str:
        return f"{gpu_check.BEGIN.format(device=key)}\n{text}\n{gpu_check.END.format(device=key)}\n"

    gpu_check.update_docs(docs, block("cpu:tiny", "cpu tiny 1"), "cpu:tiny")
    gpu_check.update_docs(docs, block("cuda:tiny", "cuda tiny"), "cuda:tiny")
    gpu_check.update_docs(docs, block("cpu:small", "cpu small"), "cpu:small")     # next to cpu:tiny
    gpu_check.update_docs(docs, block("cpu:tiny", "cpu tiny 2"), "cpu:tiny")      # in place
    text = docs.read_text()
    assert text.startswith("# Title\n\nintro\n")
    assert "cpu tiny 1" not in text and all(text.count(t) == 1 for t in ("cpu tiny 2", "cpu small", "cuda tiny"))
    assert text.index("cpu tiny 2") < text.index("cpu small") < text.index("cuda tiny")


def test_cpu_rows_on_tiny_are_measured_and_written_into_a_copy_of_the_docs(gpu_check, tmp_path, capsys):
    docs = tmp_path / "BENCHMARKS.md"
    shutil.copy(ROOT / "docs" / "BENCHMARKS.md", docs)
    before = docs.read_text()
    out = tmp_path / "out"
    code = gpu_check.main(["--device", "cpu", "--engines", "torch,ort", "--presets", "tiny", "--batch", "1,2",
                           "--iters", "2", "--warmup", "1", "--threads", "1", "--out", str(out), "--docs", str(docs)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    rows = {(r["engine"], r["batch"]): r for r in results["rows"]}
    assert set(rows) == {("torch", 1), ("torch", 2), ("ort", 1), ("ort", 2)} and results["failures"] == {}
    for (engine, _), r in rows.items():
        assert r["preset"] == "tiny" and r["device"] in ("cpu", "ORT CPU")
        assert r["backbone_ms"] > 0 and r["action_head_ms"] > 0 and r["chunk_ms"] <= r["total_ms"]
        if engine == "ort":
            assert 0 < r["max_abs_error"] <= 1e-4      # ORT is really compared, not with itself
    text = docs.read_text()
    begin, end = gpu_check.BEGIN.format(device="cpu:tiny"), gpu_check.END.format(device="cpu:tiny")

    def outside(t: str) -> str:    # the file without the section (blank lines around it collapsed)
        if begin in t:
            head, rest = t.split(begin, 1)
            t = head + rest.split(end, 1)[1]
        return re.sub(r"\n{3,}", "\n\n", t).strip()

    assert outside(text) == outside(before)          # the rest of the file is untouched
    section = text[text.index(begin):text.index(end)]
    assert "| tiny | ort | ORT CPU | n/a | 2 |" in section and "| tiny | torch | cpu | n/a | 1 |" in section
    assert section.count("| tiny |") == 4 and "### tiny, cpu: CPU" in section and "no GPU used" in section
