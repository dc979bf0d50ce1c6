"""From dataset samples to training batches.

The policy's inputs go through the same :class:`lara_g1.lara.processing.Preprocessor` as inference
(resize, normalise, tokenise, pad), so training and serving cannot drift apart. The LAM gets
the raw uint8 frames t and t+k and resizes them itself.

The batch order is a pure function of (seed, step): epoch e visits a permutation drawn from
``seed`` and ``e``, and step s takes the s-th slice of it (each DDP rank its own part of the
global batch). Resuming at step s therefore sees exactly the batches an uninterrupted run
would have seen, without any sampler state in the checkpoint.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from lara_g1.core.observation import Observation

if TYPE_CHECKING:
    from lara_g1.lara.processing import Preprocessor


class StepBatchSampler(torch.utils.data.Sampler):
    """Index lists of one rank's part of the global batch, for steps ``start .. stop - 1``."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            raise ValueError(f"the dataset has {num_samples} samples, fewer than one global batch "
                             f"({batch_size} x {world_size} ranks); lower --batch-size")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self.per_epoch = num_samples // global_batch  # drop the incomplete last batch

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=g)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = None, None
        for step in range(self.start, self.stop):
            e, k = divmod(step, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self._permutation(e)
            first = (k * self.world_size + self.rank) * self.batch_size
            yield perm[first:first + self.batch_size].tolist()


class BatchCollator:
    """Collates dataset items into numpy arrays for the objective (runs in loader workers).

    ``preprocessor`` None: LAM-only batches (frames t and t+k).
    """

    def __init__(self, preprocessor: Preprocessor | None, camera: str) -> None:
        self.preprocessor, self.camera = preprocessor, camera

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        batch = {
            "image": np.stack([it["image"] for it in items]),
            "future_image": np.stack([it["future_image"] for it in items]),
        }
        if self.preprocessor is None:
            return batch
        observations = [Observation(images={self.camera: it["image"]}, state=it["state"],
                                    instruction=it["instruction"]) for it in items]
        batch.update(self.preprocessor(observations))
        actions = np.stack([np.asarray(it["actions"], dtype=np.float32) for it in items])
        states = np.stack([np.asarray(it["state"], dtype=np.float32) for it in items])
        # relative action groups learn a[t + k] - s[t]: the chunk's raw starting state
        batch["actions"] = self.preprocessor.normalize_actions(actions, states)
        batch["action_mask"] = np.stack([np.asarray(it["action_mask"], dtype=bool) for it in items])
        return batch


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.ascontiguousarray(v)).to(device, non_blocking=True)
            for k, v in batch.items()}
