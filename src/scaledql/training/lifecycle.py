"""What every run shares, offline or online: when something is due, how a stop is asked for,
and when a saved run may continue.

- ``crossed(before, now, every)``: the cadence of evaluations, checkpoints, log rows and
  collection snapshots. A loop whose step grows by one (offline) and one whose step grows by
  the number of environments (online) are due at the same multiples.
- ``StopSignals``: Ctrl-C and a scheduler's SIGTERM ask the run to stop; it saves a checkpoint
  and leaves, and the same command continues it. While the run is ``busy`` (an update, a
  vector step) the request waits until that has finished, so the checkpoint is exact.
- ``resume_conflicts``: options of a saved run that a resumed one may not change.
- ``WallClock``: a run's wall time summed over the sessions that ran it.

The run folder itself (paths, files) belongs to ``scaledql.run_folder``; the lock to
``scaledql.atomic_files.exclusive_lock``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from scaledql.run_folder import read_wall, write_wall

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def crossed(before: int, now: int, every: int | None) -> bool:
    """Did the step pass a multiple of ``every`` in ``(before, now]``? Never for 0 or None."""
    return bool(every) and now // every > before // every  # type: ignore[operator]


class StopSignals:
    """SIGINT/SIGTERM handlers for one run (a context manager; the old ones come back on exit).

    ``interrupt_when_idle``: a signal outside ``busy`` raises ``KeyboardInterrupt`` at once
    (the offline loop: sampling and evaluation are safe to abandon); otherwise every signal
    only sets ``requested`` (the online loop checks it after each vector step). ``enabled``
    False (a distributed run's other ranks) installs nothing.

    Installed explicitly: a process started in the background of a non-interactive shell
    inherits SIGINT as *ignored*, and Python then never raises ``KeyboardInterrupt``.
    """

    def __init__(self, interrupt_when_idle: bool = False, enabled: bool = True) -> None:
        self.interrupt_when_idle = interrupt_when_idle
        self.enabled = enabled
        self.requested = False
        self.busy = False
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupt_when_idle and not self.busy:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopSignals:
        if self.enabled:
            self._old = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        self.busy = False
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


def resume_conflicts(saved: Mapping[str, Any], wanted: Mapping[str, Any],
                     changeable: Iterable[str]) -> list[str]:
    """Keys (sorted) whose values differ between a saved run's options and a resumed run's,
    other than the ``changeable`` ones (the run folder, the step budget, ...)."""
    free = set(changeable)
    return sorted(k for k in set(saved) | set(wanted)
                  if k not in free and saved.get(k) != wanted.get(k))


class WallClock:
    """Adds a run's wall time to ``RUN/wall.json`` (summed over resumed sessions)."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        self.start = time.perf_counter()

    def stop(self) -> float:
        old = read_wall(self.run)
        total = float(old["seconds"]) + time.perf_counter() - self.start
        write_wall(self.run, total, int(old.get("sessions", 0)) + 1)
        return total
