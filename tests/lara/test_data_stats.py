"""Statistics: exact vector stats, exact histogram image stats, shape checks."""
from __future__ import annotations

import numpy as np
import pytest

from lara_g1.lara.data.stats import (
    IMAGE_STRIDE,
    check_stats,
    compute_stats,
    from_json,
    histogram_stats,
    image_histogram,
    to_json,
)


def test_vector_stats_match_numpy():
    x = np.random.default_rng(0).normal(size=(500, 7)).astype(np.float32)
    s = compute_stats(x)
    np.testing.assert_allclose(s["mean"], x.astype(np.float64).mean(0))
    np.testing.assert_allclose(s["std"], x.astype(np.float64).std(0))
    np.testing.assert_array_equal(s["min"], x.min(0))
    for key, q in (("q01", 0.01), ("q10", 0.1), ("q50", 0.5), ("q90", 0.9), ("q99", 0.99)):
        np.testing.assert_allclose(s[key], np.quantile(x.astype(np.float64), q, axis=0))
    assert s["count"].tolist() == [500]
    assert check_stats(from_json(to_json({"a": s})), "a", (7,)) == []
    with pytest.raises(ValueError, match="NaN"):
        compute_stats(np.array([[1.0], [np.nan]]))


def test_histogram_stats_equal_direct_pixel_stats():
    rng = np.random.default_rng(1)
    frames = [rng.integers(10, 200, size=(48, 64, 3), dtype=np.uint8) for _ in range(3)]
    hist = sum(image_histogram(f) for f in frames)
    s = histogram_stats(hist, frames=3)
    pixels = np.concatenate([f[::IMAGE_STRIDE, ::IMAGE_STRIDE].reshape(-1, 3) for f in frames])
    pixels = pixels.astype(np.float64) / 255.0
    np.testing.assert_allclose(s["mean"].ravel(), pixels.mean(0))
    np.testing.assert_allclose(s["std"].ravel(), pixels.std(0), atol=1e-9)
    np.testing.assert_array_equal(s["min"].ravel(), pixels.min(0))
    np.testing.assert_array_equal(s["max"].ravel(), pixels.max(0))
    np.testing.assert_allclose(s["q50"].ravel(),
                               np.quantile(pixels, 0.5, axis=0, method="inverted_cdf"))
    assert s["mean"].shape == (3, 1, 1) and s["count"].tolist() == [3]
    assert check_stats({"img": s}, "img", (3, 1, 1)) == []


def test_check_stats_names_missing_and_misshapen_entries():
    s = compute_stats(np.ones((4, 3)))
    s.pop("q90")
    s["mean"] = np.ones(2)
    s["std"] = np.array([1.0, np.inf, 0.0])
    problems = check_stats({"f": s}, "f", (3,))
    assert any("lacks 'q90'" in p for p in problems)
    assert any("'mean' has shape [2], expected [3]" in p for p in problems)
    assert any("'std' contains NaN or Inf" in p for p in problems)
    assert check_stats({}, "f", (3,)) == ["meta/stats.json: no stats for 'f'"]
