"""Samplers against hand-computed transitions: n-step sums, episode ends, stacks, shares, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from scaledql.data.sampling.sampler import TrajectorySampler, TransitionSampler
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError


def _reference(episodes, label_of_obs, n, gamma, clip=None):
    """Brute force for one sampled row, from the episode list written by ``write_game``."""
    label = 1
    for t_len, terminated, _ in episodes:
        labels = list(range(label, label + t_len + 1))
        if label_of_obs in labels[:-1]:
            t = labels.index(label_of_obs)
            k = min(n, t_len - t)
            rewards = [float(t + 1 + j) for j in range(k)]  # write_game's reward of step t is t+1
            if clip is not None:
                rewards = [max(-clip, min(clip, r)) for r in rewards]
            return {"t": t, "k": k, "reward": sum(gamma**j * r for j, r in enumerate(rewards)),
                    "done": float(terminated and t + k == t_len), "next": labels[t + k],
                    "first": label}
        label += t_len + 1
    raise AssertionError(f"label {label_of_obs} is not an observation with an action")


EPISODES = [(3, True, False), (5, False, True), (1, True, False), (4, False, False)]


def test_every_row_matches_brute_force(tmp_path, write_game):
    write_game(tmp_path, "breakout", EPISODES, stack=3, shard_steps=4)
    ds = open_dataset(tmp_path)
    sampler = TransitionSampler(ds, ["breakout"], batch_size=64, n_step=3, gamma=0.5, seed=1)
    seen = set()
    for _ in range(5):
        b = sampler.sample()
        assert b.obs.shape == (64, 3, 2, 2) and b.obs.dtype == np.uint8
        for i in range(64):
            lab = int(b.obs[i, -1, 0, 0])
            ref = _reference(EPISODES, lab, n=3, gamma=0.5)
            seen.add(lab)
            stack = [lab - 2, lab - 1, lab]
            want_obs = [x if x >= ref["first"] else 0 for x in stack]  # zero before obs_0
            assert b.obs[i, :, 0, 0].tolist() == want_obs
            want_next = [x if x >= ref["first"] else 0
                         for x in (ref["next"] - 2, ref["next"] - 1, ref["next"])]
            assert b.next_obs[i, :, 0, 0].tolist() == want_next
            assert b.action[i] == ref["t"] % 3
            assert b.reward[i] == pytest.approx(ref["reward"])
            assert b.discount[i] == pytest.approx(0.5 ** ref["k"])
            assert b.done[i] == ref["done"]
    assert len(seen) == sum(t for t, _, _ in EPISODES)  # every stored step gets drawn


def test_hand_computed_cases(tmp_path, write_game):
    # One terminated episode of 3 steps: frames 1,2,3,4; rewards 1,2,3; n=2, gamma=0.5.
    write_game(tmp_path, "breakout", [(3, True, False)], stack=2)
    sampler = TransitionSampler(open_dataset(tmp_path), ["breakout"], batch_size=300, n_step=2,
                                gamma=0.5, reward_clip=2.0)
    b = sampler.sample()
    rows = {int(b.obs[i, -1, 0, 0]): i for i in range(300)}
    assert sorted(rows) == [1, 2, 3]
    first, mid, last = rows[1], rows[2], rows[3]
    assert b.obs[first, :, 0, 0].tolist() == [0, 1]  # zero-padded stack at the episode start
    assert (b.reward[first], b.discount[first], b.done[first]) == (1 + 0.5 * 2, 0.25, 0.0)
    assert b.next_obs[first, :, 0, 0].tolist() == [2, 3]
    assert (b.reward[mid], b.discount[mid], b.done[mid]) == (2 + 0.5 * 2, 0.25, 1.0)  # clip 3→2
    assert (b.reward[last], b.discount[last], b.done[last]) == (2, 0.5, 1.0)


def test_truncated_episode_bootstraps(tmp_path, write_game):
    write_game(tmp_path, "breakout", [(2, False, True)], stack=1)
    b = TransitionSampler(open_dataset(tmp_path), ["breakout"], batch_size=50, n_step=5,
                          gamma=0.9).sample()
    assert not b.done.any()
    last = int(np.flatnonzero(b.obs[:, 0, 0, 0] == 2)[0])
    assert b.next_obs[last, 0, 0, 0] == 3 and b.discount[last] == pytest.approx(0.9)


def _two_games(tmp_path, write_game):
    write_game(tmp_path, "asterix", [(4, True, False)])
    write_game(tmp_path, "breakout", [(6, True, False)])
    return open_dataset(tmp_path)


def test_game_shares_and_ids(tmp_path, write_game):
    ds = _two_games(tmp_path, write_game)
    b = TransitionSampler(ds, ["breakout", "asterix"], batch_size=10).sample()
    assert b.game_id.tolist() == [0] * 5 + [1] * 5
    assert set(b.obs[b.game_id == 1, -1, 0, 0].tolist()) <= {1, 2, 3, 4}  # asterix's frames
    weighted = TransitionSampler(ds, ["breakout", "asterix"], batch_size=8,
                                 game_weights={"breakout": 3, "asterix": 1})
    assert np.bincount(weighted.sample().game_id).tolist() == [6, 2]
    odd = TransitionSampler(ds, ["breakout", "asterix"], batch_size=7, seed=3)
    counts = np.array([np.bincount(odd.sample().game_id, minlength=2) for _ in range(200)])
    assert set(counts[:, 0].tolist()) == {3, 4} and (counts.sum(1) == 7).all()


def test_seed_reproducibility_and_resume(tmp_path, write_game):
    ds = _two_games(tmp_path, write_game)

    def make(seed):
        return TransitionSampler(ds, ["asterix", "breakout"], batch_size=16, n_step=2, seed=seed)

    a, b, c = make(7), make(7), make(8)
    batches = [a.sample() for _ in range(3)]
    assert all(np.array_equal(x.obs, b.sample().obs) for x in batches)
    assert any(not np.array_equal(x.obs, c.sample().obs) for x in batches)
    state = a.state_dict()
    expected = a.sample()
    d = make(0)
    d.load_state_dict(state)
    got = d.sample()
    assert np.array_equal(got.obs, expected.obs) and np.array_equal(got.reward, expected.reward)


def test_sampling_into_a_reused_batch(tmp_path, write_game):
    ds = _two_games(tmp_path, write_game)
    a = TransitionSampler(ds, ["asterix", "breakout"], batch_size=16, n_step=3, seed=5)
    b = TransitionSampler(ds, ["asterix", "breakout"], batch_size=16, n_step=3, seed=5)
    out = b.empty_batch()
    for _ in range(3):
        want, got = a.sample(), b.sample(out=out)
        assert got is out
        for name in ("obs", "action", "reward", "discount", "done", "next_obs", "game_id"):
            assert np.array_equal(getattr(want, name), getattr(got, name)), name


def test_rejects_bad_arguments(tmp_path, write_game):
    ds = _two_games(tmp_path, write_game)
    write_game(tmp_path, "freeway", [(2, True, False)], frame_shape=(1, 3, 3))
    ds = open_dataset(tmp_path)
    with pytest.raises(UserError, match="different observations"):
        TransitionSampler(ds, ["asterix", "freeway"], batch_size=4)
    with pytest.raises(UserError, match="no game 'pong'"):
        TransitionSampler(ds, ["pong"], batch_size=4)
    with pytest.raises(UserError, match="game_weights"):
        TransitionSampler(ds, ["asterix"], batch_size=4, game_weights={"breakout": 1.0})
    with pytest.raises(UserError, match="n_step"):
        TransitionSampler(ds, ["asterix"], batch_size=4, n_step=0)


def test_trajectories_stay_in_one_episode(tmp_path, write_game):
    # Episodes: 5 steps (labels 1..6), 2 steps (labels 7..9).
    write_game(tmp_path, "breakout", [(5, True, False), (2, False, True)], stack=2)
    sampler = TrajectorySampler(open_dataset(tmp_path), ["breakout"], batch_size=200, length=3)
    b = sampler.sample()
    assert b.obs.shape == (200, 3, 2, 2, 2)
    for i in range(200):
        labels = b.obs[i, :, -1, 0, 0].tolist()
        if labels[0] >= 7:  # the short episode: 2 real steps, then padding
            assert labels == [7, 8, 0] and b.mask[i].tolist() == [1, 1, 0]
            assert b.return_to_go[i].tolist() == [3, 2, 0] and b.timestep[i].tolist() == [0, 1, 0]
            assert b.obs[i, 0, :, 0, 0].tolist() == [0, 7]
        else:  # full windows inside the 5-step episode, rewards t+1
            t0 = labels[0] - 1
            assert 0 <= t0 <= 2 and labels == [t0 + 1, t0 + 2, t0 + 3]
            assert b.mask[i].tolist() == [1, 1, 1]
            assert b.reward[i].tolist() == [t0 + 1, t0 + 2, t0 + 3]
            assert b.return_to_go[i].tolist() == [sum(range(t + 1, 6)) for t in range(t0, t0 + 3)]
            assert b.timestep[i].tolist() == [t0, t0 + 1, t0 + 2]
            assert b.action[i].tolist() == [t % 3 for t in range(t0, t0 + 3)]
    starts = {int(b.obs[i, 0, -1, 0, 0]) for i in range(200)}
    assert starts == {1, 2, 3, 7}
