"""Running learners: configuration and presets, distributed set-up, metrics logging, RNG state,
the run session every loop shares (``session``), the offline loop (``offline_loop.train``) and
the online loop (``online_loop.run_online``, one run of it: ``online_run``).

Nothing here knows an algorithm or a game: learners come through ``agents.Learner`` and the
registry, games through ``suites``, evaluation through a callback.
"""
