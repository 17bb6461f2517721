"""The game store: its on-disk format and the one place that reads and writes it.

``format`` (layout, manifest, provenance), ``game`` (one game opened read-only: ``GameData``),
``dataset`` (``open_dataset``: a directory of games, and finding them), ``writer`` /
``build`` / ``merge`` / ``compress`` / ``frame_blocks`` (writing), ``validate`` /
``npy_header`` (checking), ``datacard`` (describing), ``action_log`` (a store rebuilt from the
actions that made it), ``episodes`` (a game's episodes in step order and which of them a run
uses). Nothing here imports ``data.sampling`` or ``data.importers``.
"""
