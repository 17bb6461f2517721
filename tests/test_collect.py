"""DQN-Replay-style collection: every transition logged, behaviour returns, reuse, fixed policies."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from scaledql.agents.dqn import DQNConfig
from scaledql.checkpoint import load_checkpoint
from scaledql.cli import main
from scaledql.collect import CollectConfig, collect
from scaledql.data.sampling.sampler import TransitionSampler
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError
from scaledql.suites import EnvOptions
from scaledql.training.online_loop import OnlineSchedule

TINY_DQN = DQNConfig(width=0.25, feature_dim=16, batch_size=8, target_update_period=10)
TINY_SCHEDULE = OnlineSchedule(learning_starts=50, epsilon_decay_steps=100, update_period=4)


def test_collect_logs_every_transition_and_returns(tmp_path):
    cfg = CollectConfig("minatar", ["breakout", "asterix"], 150, tmp_path / "d", seed=3,
                        num_envs=3, options=EnvOptions(max_episode_steps=40), dqn=TINY_DQN, schedule=TINY_SCHEDULE,
                        progress=False)
    summary = collect(cfg)
    assert [s["steps"] for s in summary] == [150, 150]
    data = open_dataset(tmp_path / "d")
    assert data.games == ["asterix", "breakout"]
    for game in data.games:
        g = data.game(game)
        assert g.num_transitions == 150
        assert g.num_actions == {"asterix": 5, "breakout": 3}[game]
        prov = g.manifest["provenance"]
        assert prov["source"] == "scaledql collect" and prov["dqn"]["learning_starts"] == 50
        assert prov["env_options"]["max_episode_steps"] == 40
        # the store's episode returns (sums of stored rewards) match what the collector saw
        seen = next(s for s in summary if s["game"] == game)
        assert g.num_episodes == seen["episodes"] >= 3
        assert np.mean(g.episode_returns) == pytest.approx(seen["mean_return"])
        counts = g.manifest["counts"]
        assert counts["episodes"] == counts["terminated"] + counts["truncated"]
        # the final DQN is kept as a checkpoint that plays
        ckpt = load_checkpoint(tmp_path / "d" / "_agents" / f"{game}.pt")
        # learning starts at the first 3-env step past 50 (51): 102 transitions / 4 = 25 updates
        assert ckpt["games"] == [game] and ckpt["step"] == 25
    # the sampler reads it back with MinAtar observations
    batch = TransitionSampler(data, data.games, batch_size=16, n_step=3, seed=0).sample()
    assert batch.obs.shape == (16, 10, 10, 10) and set(np.unique(batch.obs)) <= {0, 255}


def test_collect_is_reproducible_byte_for_byte(tmp_path):
    """Same seed, same machine: the same bytes, with learning on (updates start at step 50)."""
    def run(out):
        collect(CollectConfig("minatar", ["breakout"], 160, out, seed=1, num_envs=2,
                              dqn=TINY_DQN, schedule=TINY_SCHEDULE, progress=False))
        manifest = json.loads((out / "breakout" / "manifest.json").read_text())
        manifest.pop("created", None)
        manifest["provenance"].pop("command", None)
        arrays = {p.relative_to(out).as_posix(): p.read_bytes()
                  for p in sorted((out / "breakout").rglob("*.npy"))}
        checkpoint = load_checkpoint(out / "_agents" / "breakout.pt")
        assert checkpoint["step"] > 20  # the DQN learned while it collected
        return manifest, arrays, checkpoint["learner"]["online"]

    (ma, aa, wa), (mb, ab, wb) = run(tmp_path / "a"), run(tmp_path / "b")
    assert ma == mb and aa.keys() == ab.keys() and len(aa) >= 5
    assert all(aa[k] == ab[k] for k in aa)
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)
    assert ma["counts"]["episodes"] >= 3


@pytest.mark.heavy
def test_collect_parallel_jobs_and_snapshots(tmp_path):
    """--jobs 2 collects the games in two processes (twice: the same bytes); --snapshot-every
    keeps the run's DQN checkpoints, each with the steps and returns seen up to it."""
    def run(out):
        summary = collect(CollectConfig(
            "minatar", ["breakout", "freeway"], 120, out, seed=5, num_envs=2, dqn=TINY_DQN,
            schedule=TINY_SCHEDULE, progress=False, jobs=2, snapshot_every=50))
        return summary, {p.relative_to(out).as_posix(): p.read_bytes()
                         for p in sorted(out.rglob("*.npy"))}

    (sa, aa), (sb, ab) = run(tmp_path / "a"), run(tmp_path / "b")
    assert [s["game"] for s in sa] == ["breakout", "freeway"]
    assert [s["steps"] for s in sa] == [120, 120] and len(aa) >= 10
    assert [s["mean_return"] for s in sa] == [s["mean_return"] for s in sb]
    assert aa.keys() == ab.keys() and all(aa[k] == ab[k] for k in aa)
    agents = tmp_path / "a" / "_agents" / "freeway"
    assert sorted(p.name for p in agents.iterdir()) == ["step_00000050.pt", "step_00000100.pt"]
    snap = load_checkpoint(agents / "step_00000100.pt")
    assert snap["env_steps"] == 100 and snap["games"] == ["freeway"] and snap["step"] > 0
    final = load_checkpoint(tmp_path / "a" / "_agents" / "freeway.pt")
    assert final["step"] >= snap["step"]


def test_collect_reuses_or_refuses_existing_games(tmp_path):
    cfg = CollectConfig("minatar", ["breakout"], 40, tmp_path / "d", dqn=TINY_DQN, schedule=TINY_SCHEDULE,
                        progress=False)
    collect(cfg)
    assert collect(cfg, skip_existing=True) == [{"game": "breakout", "reused": True}]
    # the same collection again (how a stopped one continues): what it made is kept
    assert collect(cfg) == [{"game": "breakout", "reused": True}]
    with pytest.raises(UserError, match="already holds a dataset"):  # another one's: refused
        collect(dataclasses.replace(cfg, seed=1))


def test_collect_fixed_policy_from_checkpoint(tmp_path):
    collect(CollectConfig("minatar", ["breakout"], 60, tmp_path / "d", dqn=TINY_DQN, schedule=TINY_SCHEDULE,
                          progress=False))
    policy = tmp_path / "d" / "_agents" / "breakout.pt"
    assert main(["collect", "--suite", "minatar", "--games", "breakout", "--steps", "30",
                 "--out", str(tmp_path / "fixed"), "--policy", str(policy), "--epsilon", "0.2",
                 "--no-progress"]) == 0
    g = open_dataset(tmp_path / "fixed").game("breakout")
    assert g.num_transitions == 30
    assert "fixed policy" in g.manifest["provenance"]["behaviour"]


@pytest.mark.parametrize("argv,message", [
    (["--steps", "0"], "--steps must be positive"),
    (["--steps", "10", "--games", "pong"], "unknown minatar game"),
    (["--steps", "10", "--policy", "/no/such.pt"], "no such checkpoint"),
    (["--steps", "10", "--jobs", "0"], "--jobs must be positive"),
    (["--steps", "10", "--snapshot-every", "-5"], "--snapshot-every must be positive"),
])
def test_collect_bad_input(tmp_path, capsys, argv, message):
    assert main(["collect", "--suite", "minatar", "--out", str(tmp_path / "d"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d" / "breakout").exists()


def test_atari_end_to_end_collect_train_evaluate(tmp_path, capsys):
    """The same commands on real Atari games with a small encoder, on CPU."""
    data, run = tmp_path / "atari", tmp_path / "run"
    assert main(["collect", "--suite", "atari", "--games", "Pong,Breakout", "--steps", "120",
                 "--out", str(data), "--max-episode-steps", "40", "--num-envs", "2",
                 "--dqn-learning-starts", "60", "--dqn-width", "0.25", "--dqn-feature-dim", "16",
                 "--dqn-batch-size", "8", "--no-progress"]) == 0
    pong = open_dataset(data).game("Pong")
    assert pong.obs_shape == (4, 84, 84) and pong.num_transitions == 120
    # 2 envs × 60 steps: each truncated once at 40 steps, 20 steps left unfinished
    assert pong.num_episodes == 2 and pong.manifest["counts"]["truncated"] == 2
    assert pong.manifest["counts"]["unfinished"] == 2
    assert main(["train", "--data", str(data), "--out", str(run), "--encoder", "nature",
                 "--width", "0.25", "--feature-dim", "16", "--batch-size", "8", "--steps", "3",
                 "--eval-episodes", "1", "--no-progress"]) == 0
    report = json.loads(sorted((run / "eval").glob("step_*.json"))[-1].read_text())
    assert set(report["games"]) == {"Pong", "Breakout"}
    assert np.isfinite(report["aggregate"]["iqm"])  # human-normalized: both games have scores


TINY_FLAGS = ["--suite", "minatar", "--steps", "40", "--num-envs", "1", "--max-episode-steps",
              "15", "--dqn-learning-starts", "8", "--dqn-batch-size", "4", "--dqn-width", "0.25",
              "--dqn-feature-dim", "8", "--no-progress", "--device", "cpu"]


def test_collect_prints_a_rounded_table_and_json_on_request(tmp_path, capsys):
    """The summary once came as a JSON blob of 16-digit floats after the human lines."""
    out = tmp_path / "d"
    assert main(["collect", "--games", "breakout", "--out", str(out), *TINY_FLAGS]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["game", "steps", "episodes", "mean", "return", "last", "20",
                                "time", "step/s"]
    row = lines[1].split()
    assert row[:2] == ["breakout", "40"] and len(lines) == 2
    # every number rounded: at most two decimals, no exponent, no JSON
    assert all(len(cell.partition(".")[2]) <= 2 for cell in row[1:] if cell[0].isdigit())
    assert "{" not in lines[1] and "e+" not in lines[1] and "e-" not in lines[1]
    assert main(["collect", "--games", "breakout,asterix", "--out", str(out), "--skip-existing",
                 "--json", *TINY_FLAGS]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary[0] == {"game": "breakout", "reused": True}
    assert summary[1]["game"] == "asterix" and summary[1]["steps"] == 40
    assert main(["collect", "--games", "breakout", "--out", str(out), "--skip-existing",
                 *TINY_FLAGS]) == 0
    assert f"breakout  kept: already in {out}" in capsys.readouterr().out
