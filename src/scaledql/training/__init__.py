"""Running learners: configuration and presets, distributed set-up, metrics logging, RNG state,
the offline loop (``offline.train``) and the online loop (``online.run_online``).

Nothing here knows an algorithm or a game: learners come through ``agents.Learner`` and the
registry, games through ``suites``, evaluation through a callback.
"""
