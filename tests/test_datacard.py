"""`scaledql data card`: per-game sources, counts, behaviour returns and the dataset's IQM."""

from __future__ import annotations

import numpy as np

from scaledql.data.store.datacard import CARD, data_card, write_card
from scaledql.data.store.writer import GameWriter
from scaledql.stats import aggregate
from scaledql.suites.scores import normalize


def write(root, game, returns, provenance, unfinished=0):
    with GameWriter(root, suite="atari", game=game, num_actions=4, frame_shape=(1, 2, 2),
                    stack=4, rewards_clipped=True, provenance=provenance) as w:
        for r in returns:  # one-step episodes with reward r
            w.add_episode(np.zeros((2, 1, 2, 2), np.uint8), np.array([1]),
                          np.array([r], np.float32), True, False)
        for _ in range(unfinished):
            w.add_episode(np.zeros((3, 1, 2, 2), np.uint8), np.array([1, 2]),
                          np.array([1, 1], np.float32), False, False)


def test_card_numbers_and_markdown(tmp_path):
    prov = {"source": "dqn-replay", "runs": {"1": [0, 1, 2, 5], "2": [0]}}
    pong = [-21.0, -20.0, -19.0, 5.0]
    breakout = [2.0, 4.0, 8.0, 16.0, 30.0, 40.0]
    write(tmp_path, "Pong", pong, prov, unfinished=1)
    write(tmp_path, "Breakout", breakout, {"source": "dqn-replay", "runs": {"1": [3]}})
    card = data_card(tmp_path)
    p, b = card["games"]["Pong"], card["games"]["Breakout"]
    assert p["checkpoint_files"] == 5 and p["episodes"] == 4 and p["unfinished"] == 1
    assert p["transitions"] == 4 + 2 and p["behaviour_return"] == np.mean(pong)
    assert np.isclose(p["normalized_score"], normalize("atari", "Pong", np.mean(pong)))
    assert np.isclose(b["normalized_score"], normalize("atari", "Breakout", np.mean(breakout)))
    # CIs over episodes: each game's column holds K = 4 evenly spaced quantiles of its
    # normalized episode returns (Breakout's 6 episodes → its 1st, 3rd, 4th and 6th smallest).
    assert card["episodes_per_game"] == 4 and card["aggregate_games"] == ["Breakout", "Pong"]
    matrix = np.stack([normalize("atari", "Breakout", np.array([2.0, 8.0, 16.0, 40.0])),
                       normalize("atari", "Pong", np.array(pong))], 1)
    assert card["aggregate"] == aggregate(matrix, seed=0)
    text = write_card(card, tmp_path)
    assert (tmp_path / CARD).read_text() == text
    assert "| Pong | dqn-replay | 1: 0-2,5; 2: 0 | 5 | 6 | 4 | -13.75 (clipped) |" in text
    assert "CIs are over episodes" in text and "51%" in text
    assert write_card(data_card(tmp_path), tmp_path) == text  # same input, same bytes


def test_a_minatar_collection_card_has_no_dqn_replay_columns_or_atari_line(tmp_path):
    with GameWriter(tmp_path, suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(4, 10, 10), stack=1,
                    provenance={"source": "scaledql collect"}) as w:
        for r in (1.0, 3.0):
            w.add_episode(np.zeros((2, 4, 10, 10), np.uint8), np.array([1]),
                          np.array([r], np.float32), True, False)
    text = write_card(data_card(tmp_path), tmp_path)
    assert "| game | source | transitions | finished episodes | behaviour return |" in text
    assert "| breakout | scaledql collect | 2 | 2 | 2.00 |" in text
    assert "files" not in text and "51%" not in text and "human" not in text
