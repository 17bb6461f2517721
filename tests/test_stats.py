"""``stats``' own computations against the library functions they stand in for."""

from __future__ import annotations

import numpy as np
import pytest

from scaledql import stats


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (3, 5), (20, 1), (7, 3), (100, 2), (2000, 5)])
def test_iqm_is_rliables_to_the_bit(shape):
    from rliable import metrics

    rng = np.random.default_rng(sum(shape))
    for scores in (rng.normal(size=shape), rng.integers(0, 3, shape).astype(float),  # ties
                   np.full(shape, 0.25)):
        assert stats.iqm(scores) == float(metrics.aggregate_iqm(scores))


def test_iqm_of_scores_with_a_nan_or_an_infinity_is_rliables():
    from rliable import metrics

    for bad in (np.nan, np.inf, -np.inf):
        scores = np.array([[0.5, bad, 0.25, 1.0], [0.0, 0.75, 2.0, 0.5]])
        expected = float(metrics.aggregate_iqm(scores))
        got = stats.iqm(scores)
        assert got == expected or (np.isnan(got) and np.isnan(expected))


def test_an_evaluations_intervals_are_unchanged_by_the_faster_iqm(monkeypatch):
    """The bootstrap over an evaluation's episodes gives the same bytes with rliable's IQM."""
    from rliable import metrics

    episodes = np.random.default_rng(3).normal(size=(40, 2))
    fast = stats.aggregate(episodes)
    monkeypatch.setattr(stats, "iqm", metrics.aggregate_iqm)
    assert stats.aggregate(episodes) == fast
