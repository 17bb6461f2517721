"""Compressed shards and the resident pool: round trip, batches, RAM bound, rotation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaledql.cli import main
from scaledql.data.sampling.block_pool import PoolOptions
from scaledql.data.sampling.sampler import TrajectorySampler, TransitionSampler
from scaledql.data.store.compress import compress_dataset
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.validate import verify_game
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError

# (T, terminated, truncated): 60 steps over two shards, episodes of 1..9 steps
EPISODES = [(3, True, False), (9, False, True), (1, True, False), (6, True, False),
            (4, False, True), (8, True, False), (2, True, False), (5, False, False),
            (7, True, False), (3, True, False), (6, False, True), (6, True, False)]
BIG = PoolOptions(resident_bytes=1 << 30)


def _write(root, game: str, episodes, shard_steps: int) -> None:
    """A MinAtar-valid store: frame k's 18 cells are 255 times the bits of k (distinct frames);
    actions t % 3, rewards t + 1."""
    bits = 1 << np.arange(18)
    with GameWriter(root, suite="minatar", game=game, num_actions=3, frame_shape=(2, 3, 3),
                    stack=2, shard_steps=shard_steps) as w:
        label = 1
        for t, terminated, truncated in episodes:
            labels = np.arange(label, label + t + 1)[:, None]
            frames = (((labels & bits) != 0) * 255).astype(np.uint8).reshape(-1, 2, 3, 3)
            w.add_episode(frames, np.arange(t) % 3, np.arange(1, t + 1, dtype=np.float32),
                          terminated, truncated)
            label += t + 1


@pytest.fixture
def stores(tmp_path):
    """(raw root, compressed root): two games, blocks of at most 8 frames."""
    raw = tmp_path / "raw"
    _write(raw, "breakout", EPISODES, 30)
    _write(raw, "asterix", EPISODES[::-1], 25)
    packed = tmp_path / "packed"
    compress_dataset(raw, packed, level=3, block_frames=8)
    return raw, packed


def _rows(batch) -> list[tuple]:
    """Each row of a transition batch as a hashable tuple."""
    return [(batch.obs[i].tobytes(), int(batch.action[i]), float(batch.reward[i]),
             float(batch.discount[i]), float(batch.done[i]), batch.next_obs[i].tobytes(),
             int(batch.game_id[i])) for i in range(len(batch.action))]


def test_round_trip_frames_tables_and_block_alignment(stores):
    raw, packed = stores
    a, b = open_dataset(raw), open_dataset(packed)
    for game in a.games:
        ga, gb = a.game(game), b.game(game)
        assert gb.frame_codec == {"name": "zstd", "level": 3, "block_frames": 8}
        assert gb.manifest["counts"] == ga.manifest["counts"]
        for sa, sb in zip(ga.shards, gb.shards, strict=True):
            fr = sb.frames
            assert len(fr) == len(sa.frames)
            # blocks start at episodes, hold <= 8 frames unless one episode is longer
            assert set(fr.bounds[:-1].tolist()) <= set(sa.ep_frame_start.tolist())
            decoded = np.concatenate([fr.decode(k) for k in range(fr.num_blocks)])
            assert np.array_equal(decoded, sa.frames[1:])
            for name in ("actions", "rewards", "returns_to_go", "ep_length", "ep_flags"):
                assert np.array_equal(getattr(sa, name), getattr(sb, name))
        assert sum(sh.frames.num_blocks for sh in gb.shards) >= 8
        assert verify_game(gb)["transitions"] == ga.num_transitions


def test_pool_holding_everything_gives_the_raw_batches(stores):
    raw, packed = stores
    games = ["asterix", "breakout"]
    for kind in ("transitions", "trajectories"):
        def make(root, pool, kind=kind):
            args = dict(batch_size=64, seed=7, pool=pool)
            if kind == "transitions":
                return TransitionSampler(open_dataset(root), games, n_step=3, **args)
            return TrajectorySampler(open_dataset(root), games, length=5, **args)

        reference = make(raw, None)
        for sampler in (make(packed, BIG), make(raw, BIG)):  # compressed, and raw through a pool
            for _ in range(3):
                want, got = reference.sample(), sampler.sample()
                for field in want.__dataclass_fields__:
                    assert np.array_equal(getattr(want, field), getattr(got, field)), field
            reference = make(raw, None)


def test_small_pool_rows_are_raw_transitions_ram_bounded_and_rotating(stores):
    raw, packed = stores
    games = ["asterix", "breakout"]
    every = TransitionSampler(open_dataset(raw), games, batch_size=20000, n_step=3, seed=1)
    valid = set(_rows(every.sample()))  # every transition of the tiny store, many times over
    budget = 2 * 3 * 11 * (18 + 12)  # per game: 3+ blocks of <= 11 frames (sentinel included)
    opts = PoolOptions(resident_bytes=budget, rotate_every=3, rotate_share=0.5)
    sampler = TransitionSampler(open_dataset(packed), games, batch_size=32, n_step=3, seed=1,
                                pool=opts)
    pool = sampler.pool
    assert all(0 < m < len(b.frames) for m, b in zip(pool.slots, pool.blocks, strict=True))
    seen, sets = set(), []
    for _ in range(60):
        rows = _rows(sampler.sample())
        assert set(rows) <= valid  # every sampled row is a transition of the raw store
        seen.update(rows)
        assert pool.resident_nbytes() <= pool.nbytes() <= budget
        sets.append([r.tolist() for r in pool.resident])
    assert sets[0] == sets[2] != sets[3]  # rotation every 3 batches
    assert len(seen) > 0.9 * len(valid)  # rotation covers (nearly) the whole store


def test_rotation_is_deterministic_and_resumes_exactly(stores):
    _, packed = stores
    opts = PoolOptions(resident_bytes=2 * 3 * 11 * 30, rotate_every=2, rotate_share=0.5)

    def make(seed):
        return TransitionSampler(open_dataset(packed), ["asterix", "breakout"], batch_size=16,
                                 n_step=2, seed=seed, pool=opts)

    a, b, c = make(3), make(3), make(4)
    runs = [[_rows(s.sample()) for _ in range(7)] for s in (a, b, c)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    state = json.loads(json.dumps(a.state_dict()))  # JSON-able, as checkpoints keep it
    after = [_rows(a.sample()) for _ in range(5)]  # crosses two rotations
    resumed = make(99)
    resumed.load_state_dict(state)
    assert [_rows(resumed.sample()) for _ in range(5)] == after


def test_bad_input_is_one_clear_error(stores, tmp_path, capsys):
    raw, packed = stores
    with pytest.raises(UserError, match="compressed: sample them through the resident pool"):
        TransitionSampler(open_dataset(packed), ["breakout"], batch_size=4)
    with pytest.raises(UserError, match="breakout's largest block needs"):
        TransitionSampler(open_dataset(packed), ["breakout"], batch_size=4,
                          pool=PoolOptions(resident_bytes=100))
    with pytest.raises(UserError, match="its frames are compressed"):
        GameWriter(packed, suite="minatar", game="breakout", num_actions=3,
                   frame_shape=(2, 3, 3), stack=2, append=True)
    with pytest.raises(UserError, match="compressed already"):
        compress_dataset(packed, tmp_path / "again", level=3, block_frames=8)
    blocks = packed / "breakout" / "shard_00000" / "frames.zst"
    data = bytearray(blocks.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte: the block's checksum fails on decoding
    blocks.write_bytes(bytes(data))
    assert main(["data", "verify", str(packed), "--games", "breakout"]) == 2
    err = capsys.readouterr().err.strip()
    assert "frames.zst: block" in err and len(err.splitlines()) == 1
    blocks.write_bytes(bytes(data[:-3]))  # truncated: refused on open, before any sampling
    with pytest.raises(UserError, match="byte offsets"):
        open_dataset(packed)
    for argv in (["data", "compress", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                 ["data", "compress", str(raw), "--out", str(tmp_path / "o"), "--level", "0"],
                 ["data", "compress", str(raw), "--out", str(raw)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1, err


def test_compress_command_resumes_and_reports(stores, tmp_path, capsys):
    raw, _ = stores
    out = tmp_path / "cli"
    argv = ["data", "compress", str(raw), "--out", str(out), "--block-transitions", "16"]
    assert main(argv) == 0
    assert "2 game(s)" in capsys.readouterr().out
    assert main(argv) == 0  # the same source again: skipped, not refused
    assert capsys.readouterr().out.count("already compressed") == 2
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["games"]["breakout"]
    assert info["frame_codec"]["block_frames"] == 16
    assert "data compress" in info["provenance"]["compressed"]["command"]


def test_training_on_a_compressed_store_with_a_rotating_pool_resumes(tmp_path):
    from scaledql.checkpoint import load_checkpoint
    from scaledql.training.offline_loop import train
    from test_train import tiny_config

    raw, rng = tmp_path / "raw", np.random.default_rng(0)
    for game, actions in (("breakout", 3), ("asterix", 5)):
        with GameWriter(raw, suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1,
                        provenance={"env_options": {"max_episode_steps": 50}}) as w:
            for t in (7, 12, 5, 9):
                w.add_episode(rng.integers(0, 2, (t + 1, 10, 10, 10), dtype=np.uint8) * 255,
                              rng.integers(0, actions, t), np.ones(t, np.float32), True, False)
    packed = tmp_path / "packed"
    # blocks of one episode each; 60 kB: 2 of each game's 4 blocks resident, rotated every batch
    compress_dataset(raw, packed, level=1, block_frames=10)
    run = tmp_path / "run"
    opts = dict(resident_gb=6e-5, rotate_every=1, rotate_share=0.5)
    train(tiny_config(packed, run, steps=3, **opts), progress=False)
    pool = load_checkpoint(run)["prefetch"][0]["workers"][0]["pool"]
    assert pool["batches"] == 3 and [len(r) for r in pool["resident"]] == [2, 2]
    train(tiny_config(packed, run, steps=6, **opts), resume=True, progress=False)
    assert load_checkpoint(run)["step"] == 6


def test_rotation_keeps_every_block_resident_equally_often(stores):
    _, packed = stores
    sampler = TransitionSampler(open_dataset(packed), ["breakout"], batch_size=4, seed=5,
                                pool=PoolOptions(resident_bytes=990, rotate_every=1,
                                                 rotate_share=0.5))
    pool = sampler.pool
    n, m = len(pool.blocks[0].frames), pool.slots[0]
    counts = np.zeros(n)
    for _ in range(3000):
        sampler.sample()
        counts[pool.resident[0]] += 1
    # each block resident a share m / N of the time (the documented symmetry), within noise
    assert np.allclose(counts / 3000, m / n, atol=0.05), (counts / 3000, m / n)
