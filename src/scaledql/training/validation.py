"""The validation split's losses, logged at each evaluation (``docs/diagnostics.md``).

A run with ``validation > 0`` never samples its held-out episodes for training
(``EpisodeSelection``). At each evaluation the learner's objective (``held_out_losses``: for
Scaled QL the TD and CQL terms against the current target network) is measured on a fixed set
of held-out batches and, beside it, on a fixed set of training batches drawn the same way, so
that the two numbers differ only by whether the network has trained on the states:

- ``heldout/<term>`` rising while ``seen/<term>`` falls is over-fitting (memorising the
  training transitions);
- both high and flat is under-fitting.

The batches are drawn once per run from their own seed streams (the training batches are not
changed by them) and are the same at every evaluation, so a curve's steps compare. Cost: a
forward pass of online and target networks over ``VALIDATION_BATCHES`` batches of each part
per evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scaledql.agents.base import Learner
from scaledql.data.sampling.block_pool import PoolOptions
from scaledql.data.sampling.sampler import BatchSpec, make_sampler
from scaledql.data.store.dataset import Dataset
from scaledql.training.config import RunConfig

VALIDATION_BATCHES = 8  # batches of each part per evaluation (at the learner's batch size)
_SEEN_STREAM, _HELDOUT_STREAM = 2**32 - 3, 2**32 - 2  # seed streams of the fixed batches


class ValidationProbe:
    """Fixed held-out and training batches; ``losses(learner)`` → the eval row's keys."""

    def __init__(self, dataset: Dataset, games: list[str], spec: BatchSpec, cfg: RunConfig,
                 pool: PoolOptions | None) -> None:
        self.dataset, self.games, self.spec, self.cfg, self.pool = dataset, games, spec, cfg, pool
        self.batches: dict[str, list[Any]] = {}

    @property
    def enabled(self) -> bool:
        return self.cfg.validation > 0

    def _draw(self) -> None:
        for name, part, stream in (("seen", "train", _SEEN_STREAM),
                                   ("heldout", "heldout", _HELDOUT_STREAM)):
            sampler = make_sampler(self.dataset, self.games, self.spec, self.spec.batch_size,
                                   np.random.SeedSequence([self.cfg.seed, stream]), pool=self.pool,
                                   episodes=self.cfg.episodes(part))
            self.batches[name] = [sampler.sample() for _ in range(VALIDATION_BATCHES)]

    def losses(self, learner: Learner) -> dict[str, float]:
        """``heldout/<term>`` and ``seen/<term>``: the mean of each term the learner reports
        over the fixed batches of each part; {} without a validation split."""
        if not self.enabled:
            return {}
        if not self.batches:
            self._draw()
        row: dict[str, float] = {}
        for name, batches in self.batches.items():
            terms = [learner.held_out_losses(b) for b in batches]
            for key in terms[0] if terms else ():
                row[f"{name}/{key}"] = float(np.mean([t[key] for t in terms]))
        return row
