"""Offline datasets: the multi-game store, samplers, and importers (DQN Replay, Minari).

Public API::

    from scaledql.data import GameWriter, open_dataset, TransitionSampler, TrajectorySampler

See ``store`` for the on-disk layout, ``sampler`` for batches, ``dqn_replay`` and ``minari_io``
for the importers/exporter.
"""

from scaledql.data.sampler import (
    BatchSpec,
    TrajectoryBatch,
    TrajectorySampler,
    TransitionBatch,
    TransitionSampler,
    make_sampler,
)
from scaledql.data.store import Dataset, GameData, open_dataset
from scaledql.data.writer import GameWriter

__all__ = [
    "BatchSpec",
    "Dataset",
    "GameData",
    "GameWriter",
    "TrajectoryBatch",
    "TrajectorySampler",
    "TransitionBatch",
    "TransitionSampler",
    "make_sampler",
    "open_dataset",
]
