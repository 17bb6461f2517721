"""Other people's datasets into the store, and Minari out of it: the DQN Replay Dataset
(``dqn_replay``, ``dqn_layout``, ``gzip_npy``), RL Unplugged / TFDS (``rlu_source``, ``rlu_scan``,
``rlu_copy``, ``tfrecord``, ``tf_example``), the parallel, resumable import both go through
(``atari_import``, ``sources``), and Minari (``minari_read``, ``minari_io``, ``minari_meta``).
Everything is written through ``data.store``'s writer.
"""
