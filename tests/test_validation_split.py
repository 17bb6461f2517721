"""Episode selections (first / uniform shares, the validation split) and the held-out losses
a training run logs with ``--validation``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaledql.data.sampling.sampler import EpisodeSelection, TransitionSampler, fraction_of
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError

LENGTHS = np.array([3, 9, 1, 4, 12, 2, 6, 8, 5, 7, 10, 2, 3, 11, 4, 6, 2, 9, 5, 8], np.int64)


def test_first_share_is_the_prefix_holding_it():
    kept = EpisodeSelection(fraction=0.3).episodes(LENGTHS, "breakout")
    total = LENGTHS.sum()
    assert kept.tolist() == list(range(len(kept)))
    assert LENGTHS[kept].sum() >= 0.3 * total > LENGTHS[kept[:-1]].sum()


def test_uniform_share_is_seeded_spread_and_holds_the_share():
    sel = EpisodeSelection(fraction=0.3, sample="uniform", seed=4)
    kept = sel.episodes(LENGTHS, "breakout")
    assert np.all(np.diff(kept) > 0)  # time order
    assert LENGTHS[kept].sum() >= 0.3 * LENGTHS.sum()
    assert kept.tolist() == sel.episodes(LENGTHS, "breakout").tolist()  # same seed, same draw
    other = EpisodeSelection(fraction=0.3, sample="uniform", seed=5).episodes(LENGTHS, "breakout")
    assert kept.tolist() != other.tolist()
    assert kept.max() > len(EpisodeSelection(fraction=0.3).episodes(LENGTHS, "breakout"))


@pytest.mark.parametrize("fraction,sample", [(1.0, "first"), (0.5, "first"), (0.6, "uniform")])
def test_holdout_splits_the_kept_episodes_in_two(fraction, sample):
    base = EpisodeSelection(fraction=fraction, sample=sample, holdout=0.2, seed=0)
    kept = set(base.with_part("all").episodes(LENGTHS, "asterix").tolist())
    train = set(base.episodes(LENGTHS, "asterix").tolist())
    held = set(base.with_part("heldout").episodes(LENGTHS, "asterix").tolist())
    assert train | held == kept and not train & held
    assert len(held) == max(1, round(0.2 * len(kept)))
    # another game draws its own split; the same game the same one
    assert held == set(base.with_part("heldout").episodes(LENGTHS, "asterix").tolist())
    assert held != set(base.with_part("heldout").episodes(LENGTHS, "breakout").tolist())


def test_no_holdout_means_nothing_held_out():
    sel = EpisodeSelection(fraction=1.0)
    assert len(sel.with_part("heldout").episodes(LENGTHS, "x")) == 0
    assert len(sel.episodes(LENGTHS, "x")) == len(LENGTHS)


@pytest.mark.parametrize("kwargs,message", [
    ({"fraction": 0.0}, "data fraction must be in (0, 1]"),
    ({"sample": "random"}, "data sample must be one of first, uniform"),
    ({"holdout": 1.0}, "validation share must be in [0, 1)"),
    ({"part": "test"}, "episode part must be one of"),
])
def test_bad_selections_are_one_line(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        EpisodeSelection(**kwargs).validate()


def _episode_of_label(episodes, label):
    first = 1
    for i, (t, _, _) in enumerate(episodes):
        if first <= label < first + t:
            return i
        first += t + 1
    raise AssertionError(label)


def test_samplers_draw_only_their_part(tmp_path, write_game):
    episodes = [(int(t), True, False) for t in LENGTHS[:12]]
    write_game(tmp_path, "breakout", episodes, stack=1, shard_steps=15)
    ds = open_dataset(tmp_path)
    sel = EpisodeSelection(holdout=0.25, seed=1)
    held = set(sel.with_part("heldout").episodes(LENGTHS[:12], "breakout").tolist())
    for part, allowed in (("train", set(range(12)) - held), ("heldout", held)):
        sampler = TransitionSampler(ds, ["breakout"], batch_size=256, seed=3,
                                    episodes=sel.with_part(part))
        drawn = {_episode_of_label(episodes, int(label))
                 for _ in range(8) for label in sampler.sample().obs[:, -1, 0, 0]}
        assert drawn == allowed  # every episode of the part, and none of the other
    counts = fraction_of(ds.game("breakout"), sel)
    assert counts["episodes"] == 12 - len(held)
    assert counts["transitions"] == int(LENGTHS[:12].sum() - LENGTHS[sorted(held)].sum())


def test_train_with_validation_logs_held_out_and_training_losses(tmp_path):
    from conftest import TINY_NET, write_tiny_minatar_store
    from scaledql.cli import main

    data = write_tiny_minatar_store(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TINY_NET, "--steps", "4",
                 "--eval-every", "2", "--eval-episodes", "1", "--final-eval-episodes", "2",
                 "--validation", "0.25", "--no-progress", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r.get("kind") == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    for row in evals:
        for part in ("heldout", "seen"):
            for term in ("loss", "td_loss", "cql_loss"):
                assert np.isfinite(row[f"{part}/{term}"])
        assert 0.0 <= row["dead_units"] <= 1.0 and row["srank"] >= 1
    final = json.loads((run / "eval" / "step_00000004.json").read_text())
    assert all(len(g["returns"]) == 2 for g in final["games"].values())
    first = json.loads((run / "eval" / "step_00000002.json").read_text())
    assert all(len(g["returns"]) == 1 for g in first["games"].values())
    budget = json.loads((run / "budget.json").read_text())
    # one of four episodes a game is held out: passes count the other three
    assert budget["games"]["breakout"]["transitions"] in (12 + 5 + 9, 7 + 5 + 9, 7 + 12 + 9,
                                                          7 + 12 + 5)


def test_validation_split_too_small_is_one_line(tmp_path, capsys):
    from conftest import TINY_NET
    from scaledql.cli import main
    from scaledql.data.store.writer import GameWriter

    with GameWriter(tmp_path / "data", suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1) as w:
        w.add_episode(np.zeros((6, 10, 10, 10), np.uint8), np.zeros(5, np.int64),
                      np.zeros(5, np.float32), terminated=True, truncated=False)
    code = main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                 *TINY_NET, "--steps", "2", "--eval-every", "1", "--eval-episodes", "1",
                 "--validation", "0.5", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "heldout part of its episodes is empty" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
