"""Offline datasets: the multi-game store, samplers, and importers (DQN Replay, Minari).

Public API::

    from scaledql.data import GameWriter, open_dataset, TransitionSampler, TrajectorySampler
    from scaledql.data import compress_dataset, PoolOptions  # compressed stores, RAM-bounded pool
    from scaledql.data import build_store, Episode, episodes_from_arrays  # your own episodes

Three parts, by role (``docs/architecture.md``): ``store`` (the on-disk format, writing,
checking and describing it), ``sampling`` (batches from an opened store; the online replay) and
``importers`` (DQN Replay, RL Unplugged, Minari). Sampling and importers read and write through
the store; the store knows neither.
"""

from scaledql.data.sampling.block_pool import PoolOptions
from scaledql.data.sampling.sampler import (
    BatchSpec,
    TrajectoryBatch,
    TrajectorySampler,
    TransitionBatch,
    TransitionSampler,
    make_sampler,
)
from scaledql.data.store.build import Episode, build_store, episodes_from_arrays
from scaledql.data.store.compress import compress_dataset
from scaledql.data.store.dataset import Dataset, GameData, open_dataset
from scaledql.data.store.writer import GameWriter

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
