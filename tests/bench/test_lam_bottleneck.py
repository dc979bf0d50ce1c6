"""bench/lam_bottleneck.py runs its three modes end to end on a small dataset and prints each one's numbers."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from tests.helpers.data import write_known_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_the_three_modes_print_reconstruction_and_the_latent_report(tmp_path, capsys):
    demos = write_known_dataset(tmp_path / "demos", lengths=(30, 30, 30, 30), tasks=("a", "b", "a", "b"))
    video = write_known_dataset(tmp_path / "video", lengths=(30, 30), tasks=("x", "x"))
    spec = importlib.util.spec_from_file_location("_lara_bench_lam_bottleneck", ROOT / "bench" / "lam_bottleneck.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        module.main(["--dataset", str(demos), "--video", str(video), "--pairs", "40", "--steps", "12",
                     "--offset", "5"])
    finally:
        sys.modules.pop(spec.name, None)
    out = capsys.readouterr().out
    assert "80 pairs (60 train, 20 held out), k = 5" in out
    ratios = {mode: float(r) for mode, r in re.findall(r"\[(\w+)\] 12 steps in \d+ s; held-out reconstruction / "
                                                       r"copy-frame-t ([0-9.]+)", out)}
    assert set(ratios) == {"vq", "continuous", "oracle"} and all(r > 0 for r in ratios.values())
    assert out.count("latent report: ") == 2            # none for the oracle, which has no z
    vq, continuous = out.split("[continuous] latent report")
    assert "recon      LAM MSE" in vq and "recon      LAM MSE" not in continuous.split("[oracle]")[0]
    assert "z spread ratio by step 0:" in out
