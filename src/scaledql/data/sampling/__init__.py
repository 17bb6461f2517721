"""Batches from an opened store, for learners: ``sampler`` (n-step transitions and
sub-trajectories), ``shard_arrays`` (what a sampler reads per shard), ``block_pool``
(a compressed store's frames in bounded RAM), ``prefetch`` (batches ahead, on the device), and
``online_replay`` (the ring buffer online learners fill as they play). Reads the store through
``data.store``; knows no importer.
"""
