"""``game.behaviour_score``: which episodes count, and the part ``--data-fraction`` keeps."""

from __future__ import annotations

import numpy as np
import pytest

from scaledql.data.sampling.sampler import fraction_of
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.game import behaviour_score
from scaledql.data.store.writer import GameWriter
from scaledql.suites.scores import normalize

FRAME = (4, 10, 10)


def write(root, episodes, append=False):
    """episodes: (length, reward per step, terminated, truncated, partial_start)."""
    with GameWriter(root, suite="minatar", game="breakout", num_actions=3, frame_shape=FRAME,
                    stack=1, shard_steps=7, append=append) as w:
        for t, r, term, trunc, partial in episodes:
            w.add_episode(np.zeros((t + 1, *FRAME), np.uint8), np.ones(t, np.int64),
                          np.full(t, r, np.float32), term, trunc, partial_start=partial)
    return open_dataset(root).game("breakout")


def test_every_finished_episode_counts_and_nothing_else(tmp_path):
    g = write(tmp_path, [(3, 1.0, True, False, True),  # began before the data
                         (2, 2.0, True, False, False), (4, 1.0, False, True, False),
                         (5, 3.0, False, False, False)])  # unfinished
    b = behaviour_score(g)
    assert b.returns.tolist() == [4.0, 4.0] == g.episode_returns.tolist() and b.episodes == 2
    assert b.mean_return == 4.0 and b.score == float(normalize("minatar", "breakout", 4.0))
    assert np.allclose(b.normalized, normalize("minatar", "breakout", b.returns))
    assert g.info()["normalized_score"] == b.score and g.info()["mean_return"] == 4.0


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.35, 0.5, 0.8, 1.0])
def test_the_part_a_data_fraction_keeps(tmp_path, fraction):
    # Only finished episodes, then one unfinished: the first `kept` episodes of the data
    # fraction are its first `kept` finished ones (what the claims study has always taken).
    rng = np.random.default_rng(0)
    eps = [(int(rng.integers(1, 6)), float(rng.integers(0, 4)), True, False, False)
           for _ in range(20)] + [(3, 1.0, False, False, False)]
    g = write(tmp_path, eps)
    kept = fraction_of(g, fraction)
    b = behaviour_score(g, steps=kept["transitions"])
    assert b.returns.tolist() == g.episode_returns[:kept["episodes"]].tolist()


def test_a_prefix_counts_the_finished_episodes_that_end_in_it(tmp_path):
    write(tmp_path, [(2, 1.0, True, False, False), (3, 5.0, False, False, False)])
    g = write(tmp_path, [(2, 2.0, True, False, True), (1, 3.0, True, False, False),
                         (0, 0.0, True, False, False), (4, 1.0, False, True, False)], append=True)
    # steps 0-1: finished; 2-4: unfinished (the first write's last); 5-6: partial start; 7: finished
    # (then a finished empty one at step 8); 8-11: finished
    assert g.episode_returns.tolist() == [2.0, 3.0, 0.0, 4.0]
    assert behaviour_score(g, steps=1).episodes == 0 and behaviour_score(g, steps=1).score is None
    assert behaviour_score(g, steps=2).returns.tolist() == [2.0]
    assert behaviour_score(g, steps=7).returns.tolist() == [2.0]
    assert behaviour_score(g, steps=8).returns.tolist() == [2.0, 3.0, 0.0]
    assert behaviour_score(g, steps=12).returns.tolist() == [2.0, 3.0, 0.0, 4.0]
    assert behaviour_score(g, steps=12).score == behaviour_score(g).score
