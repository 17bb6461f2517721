"""Offline datasets: the multi-game store, samplers, and importers (DQN Replay, Minari).

Public API::

    from scaledql.data import GameWriter, open_dataset, TransitionSampler, TrajectorySampler
    from scaledql.data import compress_dataset, PoolOptions  # compressed stores, RAM-bounded pool
    from scaledql.data import build_store, Episode, episodes_from_arrays  # your own episodes

See ``format`` for the on-disk layout, ``store`` and ``game`` for reading it, ``sampler`` for
batches, ``frame_blocks``, ``compress`` and ``pool`` for compressed stores and the resident pool,
``dqn_replay`` and ``minari_io`` for the importers/exporter.
"""

from scaledql.data.build import Episode, build_store, episodes_from_arrays
from scaledql.data.compress import compress_dataset
from scaledql.data.pool import PoolOptions
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
    "Episode",
    "GameData",
    "GameWriter",
    "PoolOptions",
    "TrajectoryBatch",
    "TrajectorySampler",
    "TransitionBatch",
    "TransitionSampler",
    "build_store",
    "compress_dataset",
    "episodes_from_arrays",
    "make_sampler",
    "open_dataset",
]
