"""Action logs: a collected game rebuilt exactly from the actions it took; bad logs refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.test_collect import TINY_DQN, TINY_SCHEDULE

from scaledql.cli import main
from scaledql.collect import CollectConfig, collect
from scaledql.data.store.action_log import log_path, read_log, store_digest, write_log
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError
from scaledql.suites import EnvOptions


def _config(out, logs, **kw):
    base = dict(suite="minatar", games=["breakout", "asterix"], steps=161, out=out, seed=2,
                num_envs=3, options=EnvOptions(max_episode_steps=40), dqn=TINY_DQN,
                schedule=TINY_SCHEDULE, progress=False, log_dir=logs)
    return CollectConfig(**{**base, **kw})


def _arrays(game_dir):
    return {p.relative_to(game_dir).as_posix(): p.read_bytes()
            for p in sorted(game_dir.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_a_game_is_rebuilt_byte_for_byte_from_its_log(tmp_path):
    logs = tmp_path / "logs"
    first = collect(_config(tmp_path / "a", logs))
    assert sorted(p.name for p in logs.iterdir()) == ["asterix.npz", "breakout.npz"]
    actions, meta = read_log(log_path(logs, "breakout"))
    assert len(actions) == 161 and actions.max() < 3
    assert meta["recipe"]["seed"] == 2 and meta["recipe"]["dqn"]["learning_starts"] == 50
    again = collect(_config(tmp_path / "b", logs))
    assert all(r.get("rebuilt") for r in again)
    for game in ("breakout", "asterix"):
        assert _arrays(tmp_path / "a" / game) == _arrays(tmp_path / "b" / game)
        ma, mb = (json.loads((tmp_path / d / game / "manifest.json").read_text())
                  for d in ("a", "b"))
        ma.pop("created"), mb.pop("created")
        assert ma == mb  # provenance included: the rebuilt store says how the data was made
        assert store_digest(tmp_path / "b" / game) == read_log(log_path(logs, game))[1]["digest"]
    assert [r["mean_return"] for r in again] == [r["mean_return"] for r in first]
    open_dataset(tmp_path / "b", contents=True)


def test_a_log_written_before_a_setting_existed_still_rebuilds(tmp_path):
    """A learner option added since a log was written (at its default) does not make the log
    another collection's; a behaviour setting that differs does (the committed logs of
    data/minatar-1m predate `hl_gauss_sigma_ratio`)."""
    logs = tmp_path / "logs"
    collect(_config(tmp_path / "a", logs, games=["breakout"]))
    actions, meta = read_log(log_path(logs, "breakout"))
    old = {**meta["recipe"], "dqn": {k: v for k, v in meta["recipe"]["dqn"].items()
                                     if k != "hl_gauss_sigma_ratio"}}
    write_log(log_path(logs, "breakout"), actions.tolist(), old, meta["provenance"],
              meta["digest"])
    assert collect(_config(tmp_path / "b", logs, games=["breakout"]))[0]["rebuilt"]
    other = {**old, "dqn": {**old["dqn"], "adam_eps": 1e-8}}
    write_log(log_path(logs, "breakout"), actions.tolist(), other, meta["provenance"],
              meta["digest"])
    with pytest.raises(UserError, match=r"made by another collection \(dqn"):
        collect(_config(tmp_path / "c", logs, games=["breakout"]))


def test_a_log_of_another_collection_or_a_damaged_one_is_refused(tmp_path):
    logs = tmp_path / "logs"
    collect(_config(tmp_path / "a", logs, games=["breakout"]))
    with pytest.raises(UserError, match=r"made by another collection \(seed"):
        collect(_config(tmp_path / "b", logs, games=["breakout"], seed=5))
    with pytest.raises(UserError, match=r"another collection \(steps"):
        collect(_config(tmp_path / "b", logs, games=["breakout"], steps=100))
    assert not (tmp_path / "b" / "breakout").exists()
    # other actions than the data was made with: the rebuild does not match and is removed
    actions, meta = read_log(log_path(logs, "breakout"))
    tampered = actions.copy()
    tampered[60:] = (tampered[60:] + 1) % 3
    write_log(log_path(logs, "breakout"), tampered.tolist(), meta["recipe"], meta["provenance"],
              meta["digest"])
    with pytest.raises(UserError, match="made other data than it was logged from"):
        collect(_config(tmp_path / "c", logs, games=["breakout"]))
    assert not (tmp_path / "c" / "breakout").exists()
    log_path(logs, "breakout").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable action log"):
        collect(_config(tmp_path / "d", logs, games=["breakout"]))


def test_collect_cli_log_dir(tmp_path, capsys):
    argv = ["collect", "--suite", "minatar", "--games", "breakout", "--steps", "120",
            "--num-envs", "2", "--dqn-learning-starts", "40", "--dqn-batch-size", "8",
            "--no-progress", "--log-dir", str(tmp_path / "logs")]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert "rebuilt from its action log" in capsys.readouterr().out
    a, b = (np.load(tmp_path / d / "breakout" / "shard_00000" / "actions.npy") for d in "ab")
    assert np.array_equal(a, b)
