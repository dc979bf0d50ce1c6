"""Random-shift augmentation: a translation with replicated edges, reproducible from the
step's generator, identity at 0."""
from __future__ import annotations

import pytest
import torch

from lara_g1.lara.train.augment import random_shift


def test_each_image_is_a_translation_within_the_bound():
    b, s, k = 64, 20, 3
    pixels = torch.zeros(b, 3, s, s)
    pixels[:, :, 10, 10] = 1.0  # one bright pixel, away from the border
    out = random_shift(pixels, k, torch.Generator().manual_seed(0))
    assert out.shape == pixels.shape
    moves = set()
    for i in range(b):
        ys, xs = torch.nonzero(out[i, 0], as_tuple=True)
        assert len(ys) == 1 and torch.equal(out[i, 0], out[i, 2])  # moved, not blurred; channels together
        dy, dx = int(ys[0]) - 10, int(xs[0]) - 10
        assert abs(dy) <= k and abs(dx) <= k
        moves.add((dy, dx))
    assert len(moves) > 20  # shifts vary per image (49 possible)


def test_borders_are_replicated():
    pixels = torch.arange(8.0).repeat(1, 1, 8, 1)  # [1, 1, 8, 8], value = column
    for seed in range(20):
        out = random_shift(pixels, 2, torch.Generator().manual_seed(seed))
        row = out[0, 0, 0]
        assert row.min() >= 0 and row.max() <= 7
        assert torch.all(row[1:] - row[:-1] >= 0)  # still ordered: edge columns repeat, never wrap


def test_same_generator_state_same_shift_and_zero_is_identity():
    pixels = torch.rand(4, 3, 16, 16)
    a = random_shift(pixels, 4, torch.Generator().manual_seed(7))
    b = random_shift(pixels, 4, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert random_shift(pixels, 0) is pixels
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(pixels, -1)
