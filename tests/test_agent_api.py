"""The object API (``scaledql.make`` / ``Agent`` / ``scaledql.load``): predict's input checks,
save → load giving the same actions, and fit being ``scaledql train``'s run, resume included."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import scaledql as sq
from conftest import write_tiny_minatar_store
from scaledql.checkpoint import load_checkpoint
from scaledql.errors import UserError

GAMES = ["breakout", "asterix"]  # the tiny store's games, in the heads' order of make(games=GAMES)
# A tiny network, one evaluation episode (the store caps episodes at 30 steps), CPU, and the
# loop's logging and checkpoints every 2 steps so short fits exercise them.
TINY = dict(encoder="nature", width=0.25, feature_dim=16, batch_size=8, target_update_period=2,
            eval_episodes=1, log_every=2, checkpoint_every=2, seed=3)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_tiny_minatar_store(tmp_path_factory.mktemp("agent_api") / "data")


@pytest.fixture(scope="module")
def fitted(store, tmp_path_factory) -> sq.Agent:
    agent = sq.make("scaled-ql", games=GAMES, device="cpu", **TINY)
    agent.fit(store, 4, out=tmp_path_factory.mktemp("fitted") / "run", progress=False)
    return agent


def frames(n: int, seed: int = 0) -> np.ndarray:
    """uint8[n, 10, 10, 10] MinAtar-like observations: cells 0 or 255."""
    return (255 * np.random.default_rng(seed).integers(0, 2, (n, 10, 10, 10))).astype(np.uint8)


def weights(agent: sq.Agent) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name, m in agent.learner.modules().items()
            for k, v in m.state_dict().items()}


# -- predict -----------------------------------------------------------------------------------
def test_predict_one_observation_and_a_batch(fitted):
    obs = frames(16)
    one = fitted.predict(obs[0], "breakout")
    assert isinstance(one, np.int64) and 0 <= one < 3
    batch = fitted.predict(obs, "asterix")
    assert batch.dtype == np.int64 and batch.shape == (16,) and ((batch >= 0) & (batch < 5)).all()
    # one observation is the batch's row; no reset() or order of calls matters
    assert fitted.predict(obs[3], "asterix") == batch[3]
    assert np.array_equal(fitted.predict(obs, "asterix"), batch)


def test_predict_refuses_float_and_other_dtypes(fitted):
    obs = frames(2)
    with pytest.raises(UserError, match=r"uint8 frames \(0-255\), got float32: .*\[0, 1\]"):
        fitted.predict(obs.astype(np.float32) / 255, "breakout")
    with pytest.raises(UserError, match=r"uint8 frames .* got int64$"):
        fitted.predict(obs.astype(np.int64), "breakout")


@pytest.mark.parametrize("shape", [(10, 10), (10, 10, 4), (2, 4, 10, 10), (1, 2, 10, 10, 10)])
def test_predict_refuses_a_wrong_shape(fitted, shape):
    with pytest.raises(UserError, match=re.escape(
            f"one observation of shape (10, 10, 10) or a batch of shape (N, 10, 10, 10), got "
            f"shape {shape}")):
        fitted.predict(np.zeros(shape, np.uint8), "breakout")


def test_predict_refuses_a_game_without_a_head(fitted):
    with pytest.raises(UserError, match=r"no head for 'freeway' \(trained on: breakout, asterix"):
        fitted.predict(frames(1)[0], "freeway")


def test_an_untrained_agent_predicts_for_the_suite_games():
    agent = sq.make("bc", games="breakout,freeway", device="cpu", encoder="nature", width=0.25,
                    feature_dim=16)
    assert agent.games == ["breakout", "freeway"] and agent.num_actions == [3, 3]
    assert agent.obs_shape == (10, 10, 10) and agent.step == 0 and agent.run is None
    assert agent.predict(frames(4), "freeway").shape == (4,)


# -- save / export → load --------------------------------------------------------------------
def test_save_load_round_trip_gives_identical_predictions(fitted, tmp_path):
    obs = frames(64, seed=1)
    loaded = sq.load(fitted.save(tmp_path / "agent.pt"), device="cpu")
    assert (loaded.algo, loaded.games, loaded.step) == ("scaled-ql", GAMES, 4)
    for game_id, game in enumerate(GAMES):
        assert np.array_equal(loaded.predict(obs, game), fitted.predict(obs, game))
        x = torch.from_numpy(obs)  # the scores behind the actions, bit for bit
        assert torch.equal(loaded.learner.q_values(x, game_id), fitted.learner.q_values(x, game_id))
    assert weights(loaded).keys() == weights(fitted).keys()
    assert all(torch.equal(v, weights(fitted)[k]) for k, v in weights(loaded).items())
    # the saved file is a checkpoint like any run's: the loader of every command reads it
    payload = load_checkpoint(tmp_path / "agent.pt")
    assert payload["run_config"]["learner"]["width"] == 0.25 and payload["step"] == 4


def test_export_load_round_trip_gives_identical_predictions(fitted, tmp_path):
    obs = frames(32, seed=2)
    loaded = sq.load(fitted.export(tmp_path / "exported"), device="cpu")
    assert (tmp_path / "exported" / "model.safetensors").is_file()
    assert np.array_equal(loaded.predict(obs, "asterix"), fitted.predict(obs, "asterix"))
    # the run's evaluation reached the model card's config
    import json

    assert json.loads((tmp_path / "exported" / "config.json").read_text())["evaluation"]["step"] == 4


def test_save_needs_a_checkpoint_file_and_spares_a_run(fitted, tmp_path):
    with pytest.raises(UserError, match=r"should end in \.pt"):
        fitted.save(tmp_path / "agent")
    with pytest.raises(UserError, match="is the checkpoint of the run"):
        fitted.save(fitted.run / "checkpoint.pt")


# -- fit: the command's run --------------------------------------------------------------------
def test_fit_is_the_train_command_and_continues_its_run(store, tmp_path):
    # The command's path, straight to 6 steps...
    cfg = sq.make_config(store, tmp_path / "cli", "scaled-ql", games=GAMES, steps=6, device="cpu",
                         **{k: v for k, v in TINY.items() if k in ("eval_episodes", "log_every",
                                                                   "checkpoint_every", "seed")},
                         learner={k: v for k, v in TINY.items() if k in ("encoder", "width",
                               "feature_dim", "batch_size", "target_update_period")})
    sq.train_run(cfg, progress=False)
    # ...and the agent's: 4 steps, then a second fit that continues the same run to 6
    agent = sq.make("scaled-ql", games=GAMES, device="cpu", **TINY)
    rows: list[dict] = []
    agent.fit(sq.open_dataset(store), 4, out=tmp_path / "api", progress=False,
              callbacks=[rows.append])
    assert (agent.step, agent.run) == (4, tmp_path / "api")
    assert [(r["kind"], r["step"]) for r in rows] == [("train", 2), ("train", 4), ("eval", 4)]
    agent.fit(store, 6, progress=False, callbacks=[rows.append])
    assert rows[-1]["kind"] == "eval" and rows[-1]["step"] == 6 and "iqm" in rows[-1]
    straight = sq.load(tmp_path / "cli", device="cpu")
    assert all(torch.equal(v, weights(straight)[k]) for k, v in weights(agent).items())
    # a run folder loads as an agent that fits further, in that folder only
    again = sq.load(tmp_path / "api", device="cpu")
    assert again.run == tmp_path / "api" and again.step == 6
    with pytest.raises(UserError, match="fit continues it there"):
        again.fit(store, 8, out=tmp_path / "elsewhere")


def test_a_run_of_the_command_loads_and_fits_further(store, tmp_path):
    # configured as `scaledql train --data STORE --out RUN` is: every game of the data
    cfg = sq.make_config(store, tmp_path / "run", "bc", steps=2, device="cpu", eval_episodes=1,
                         learner={"encoder": "nature", "width": 0.25, "feature_dim": 16,
                                  "batch_size": 8})
    agent = sq.Agent.from_config(cfg)
    assert agent.games == ["asterix", "breakout"] and agent.run is None  # the store's order
    agent.fit(progress=False)  # the config's data, folder and steps
    assert agent.step == 2 and agent.run == tmp_path / "run"
    assert agent.config.games == ["asterix", "breakout"]
    again = sq.load(tmp_path / "run")
    again.fit(store, 4, progress=False)
    assert again.step == 4 and load_checkpoint(tmp_path / "run")["step"] == 4


def test_fit_refusals(fitted, store, tmp_path):
    with pytest.raises(UserError, match="holds no training run to continue"):
        sq.load(fitted.save(tmp_path / "a.pt")).fit(store, 8)
    fresh = sq.make("scaled-ql", games=["breakout", "freeway"], device="cpu", **TINY)
    with pytest.raises(UserError, match="freeway"):  # the store has no freeway
        fresh.fit(store, 2, out=tmp_path / "r")
    with pytest.raises(UserError, match="already holds a run"):
        sq.make("scaled-ql", games=GAMES, device="cpu", **TINY).fit(store, 2, out=fitted.run)
    with pytest.raises(UserError, match="fit needs a dataset"):
        sq.make("scaled-ql", games=GAMES, device="cpu", **TINY).fit(steps=2)


def test_make_names_a_misspelt_option():
    with pytest.raises(UserError, match=r"'widht' is neither a run option nor a scaled-ql "
                                        r"learner option \(did you mean 'width'\?\)"):
        sq.make("scaled-ql", games="breakout", widht=2)
    with pytest.raises(UserError, match="out is an argument of fit"):
        sq.make("scaled-ql", games="breakout", out="runs/x")
