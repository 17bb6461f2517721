"""The run lifecycle both drivers share (training/lifecycle.py)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from scaledql.training.lifecycle import StopSignals, WallClock, crossed, resume_conflicts


def test_crossed_is_due_at_the_same_multiples_for_any_stride():
    one_by_one = [s for s in range(1, 41) if crossed(s - 1, s, 10)]
    by_eight = [s for s in range(8, 41, 8) if crossed(s - 8, s, 10)]
    assert one_by_one == [10, 20, 30, 40]
    assert by_eight == [16, 24, 32, 40]  # the first step at or past each multiple
    assert not crossed(0, 100, 0) and not crossed(0, 100, None)


def test_a_signal_while_busy_is_a_request_and_the_old_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(interrupt_when_idle=True) as signals:
        signals.busy = True
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.requested
        signals.busy = False
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    with StopSignals() as signals:  # online: never raises, always a request
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.requested


def test_resume_conflicts_ignores_what_may_change():
    saved = {"out": "a", "steps": 10, "lr": 1e-3, "seed": 0}
    wanted = {"out": "b", "steps": 20, "lr": 2e-3, "seed": 1, "new": True}
    assert resume_conflicts(saved, wanted, ("out", "steps")) == ["lr", "new", "seed"]
    assert resume_conflicts(saved, dict(saved), ()) == []


def test_wall_clock_sums_sessions(tmp_path):
    WallClock(tmp_path).stop()
    total = WallClock(tmp_path).stop()
    saved = json.loads((tmp_path / "wall.json").read_text())
    assert saved["sessions"] == 2 and saved["seconds"] == pytest.approx(total)
