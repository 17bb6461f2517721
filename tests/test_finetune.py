"""Fine-tuning a pretrained run: data fraction, offline arms to unseen games, online arms in a
game variant (transfer, freezing, fresh heads, resume after a kill), reports, bad input."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from scaledql.agents.registry import learner_class
from scaledql.checkpoint import load_checkpoint, load_learner
from scaledql.cli import main
from scaledql.data.sampling.online_replay import RingReplay
from scaledql.data.sampling.sampler import TransitionSampler, fraction_of
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError
from scaledql.finetune.common import parse_arms
from scaledql.finetune.new_games import OfflineFinetune, run_offline
from scaledql.finetune.variants import OnlineFinetune, run_online_finetune
from scaledql.suites import EnvOptions
from scaledql.training.config import RunConfig
from scaledql.training.offline_loop import train

ACTIONS = {"breakout": 3, "asterix": 5, "freeway": 3}
CAP = {"max_episode_steps": 30}  # short evaluation episodes


def write_store(root: Path, games: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for game, actions in games.items():
        with GameWriter(root, suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1,
                        provenance={"source": "test", "env_options": CAP}) as w:
            for length in (6, 9, 4, 8, 5):
                w.add_episode(255 * rng.integers(0, 2, (length + 1, 10, 10, 10), dtype=np.uint8),
                              rng.integers(0, actions, length),
                              rng.integers(0, 2, length).astype(np.float32), True, False)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A store of three games; Scaled QL and MAE runs pretrained on two of them."""
    tmp = tmp_path_factory.mktemp("finetune")
    data = write_store(tmp / "data", ACTIONS)
    runs = {}
    for algo, seed in (("scaled-ql", 7), ("mae", 8)):
        runs[algo] = tmp / algo
        # seeds 7, 8: distinct initializations, and not the from-scratch arms' (seed 0)
        train(RunConfig(data=str(data), out=str(runs[algo]), algo=algo, steps=3, device="cpu",
                        games=["breakout", "asterix"], sample_workers=0, seed=seed,
                        learner=learner_class(algo).tiny_config()), progress=False)
    return {"data": data, "pretrained": runs["scaled-ql"], "mae": runs["mae"]}


def online_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run)["learner"]["online"]


def encoder(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("torso.encoder.")}


# -- the data fraction ---------------------------------------------------------------------------
def test_data_fraction_keeps_the_first_whole_episodes(tmp_path, write_game):
    episodes = [(3, True, False), (5, True, False), (1, True, False), (4, False, True),
                (7, True, False)]  # 20 transitions; shards of 4 steps split them
    write_game(tmp_path, "breakout", episodes, stack=2, shard_steps=4)
    game = open_dataset(tmp_path).game("breakout")
    # 30% of 20 = 6 transitions: the first episode (3) is not enough, the first two (8) are
    assert fraction_of(game, 0.3) == {"episodes": 2, "transitions": 8, "total_episodes": 5,
                                      "total_transitions": 20}
    assert fraction_of(game, 0.01)["episodes"] == 1  # at least one episode
    assert fraction_of(game, 0.4)["transitions"] == 8  # 8 of 20 is exactly 40%
    assert fraction_of(game, 1.0)["transitions"] == 20
    sampler = TransitionSampler(open_dataset(tmp_path), ["breakout"], batch_size=64, seed=0,
                                data_fraction=0.3)
    # frames are labelled 1, 2, ... in write order: episode 1 is 1-4, episode 2 is 5-10
    seen = {int(sampler.sample().obs[i, -1, 0, 0]) for _ in range(10) for i in range(64)}
    assert seen == {1, 2, 3, 5, 6, 7, 8, 9}  # every step of the two episodes, nothing else
    with pytest.raises(UserError, match=r"data fraction must be in \(0, 1\]"):
        TransitionSampler(open_dataset(tmp_path), ["breakout"], batch_size=4, data_fraction=0.0)
    with pytest.raises(UserError, match=r"data_fraction must be in \(0, 1\]"):
        RunConfig(data="d", out="o", data_fraction=1.5).validate()


def test_arm_names():
    assert parse_arms(None, "offline") == ["pretrained"]
    assert parse_arms(None, "offline", freeze=True) == ["pretrained-frozen"]
    assert parse_arms("pretrained,mae,scratch", "offline", freeze=True) == \
        ["pretrained-frozen", "mae-frozen", "scratch"]
    assert parse_arms("all", "online") == ["pretrained", "scratch", "mae", "dqn"]
    with pytest.raises(UserError, match="unknown online fine-tuning arm 'bc'"):
        parse_arms("bc", "online")


# -- offline -----------------------------------------------------------------------------------
def test_offline_arms_transfer_freeze_and_report(setup, tmp_path, capsys):
    out = tmp_path / "ft"
    cfg = OfflineFinetune(pretrained=setup["pretrained"], data=setup["data"], out=out,
                          fraction=0.5, mae=setup["mae"], steps=4,
                          arms=["pretrained", "pretrained-frozen", "scratch", "mae", "bc"],
                          run_overrides={"eval_episodes": 1, "device": "cpu",
                                         "sample_workers": 0}, progress=False)
    summary = run_offline(cfg)
    assert not summary["interrupted"] and len(summary["runs"]) == 5
    src = online_state(setup["pretrained"])
    runs = {arm: out / arm / "freeway" / "seed_0" for arm in cfg.arms}
    for arm, run in runs.items():  # only the game it never saw, from the first half of its data
        saved = json.loads((run / "config.json").read_text())
        assert saved["games"] == ["freeway"] and saved["data_fraction"] == 0.5
        assert saved["algo"] == ("bc" if arm == "bc" else "scaled-ql")
        assert load_checkpoint(run)["step"] == 4
    # frozen: the pretrained encoder, unchanged after training; the projection re-initialised
    frozen = online_state(runs["pretrained-frozen"])
    assert all(torch.equal(frozen[k], v) for k, v in encoder(src).items())
    assert not torch.equal(frozen["torso.projection.weight"], src["torso.projection.weight"])
    # fine-tuned arms started at their source's encoder (4 Adam steps of 1e-3 move it a
    # little); the same network from scratch did not
    mae, _ = load_learner(setup["mae"], "cpu")
    mae_src = {f"torso.{k}": v for k, v in mae.torso.state_dict().items() if k.startswith("encoder.")}
    for arm, source, near in (("pretrained", encoder(src), True), ("scratch", encoder(src), False),
                              ("mae", mae_src, True), ("pretrained", mae_src, False)):
        mine = encoder(online_state(runs[arm]))
        gap = max((mine[k] - v).abs().max().item() for k, v in source.items())
        assert (gap < 0.01) == near, (arm, gap)
    report = (out / "report.md").read_text()
    for arm in cfg.arms:
        assert f"| `{arm}` |" in report
    assert "Improvement over the best alternative" in report and (out / "curves.png").exists()
    assert "first 3 of 5 episodes" in report  # freeway: 16 of 32 transitions need 3 episodes
    # the experiment is also a report over runs: one method per arm
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--reps", "20",
                 "--improvement-reps", "5"]) == 0
    over = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert sorted(over["methods"]) == sorted(cfg.arms) and over["games"] == ["freeway"]
    # a second invocation skips every finished run
    capsys.readouterr()
    run_offline(cfg)
    assert capsys.readouterr().err.count("finished, skipped") == 5
    # ... also as a study's archive restores them: finished runs without their checkpoints
    for run in runs.values():
        (run / "checkpoint.pt").unlink()
    rows_before = (runs["scratch"] / "metrics.jsonl").read_text()
    run_offline(cfg)
    assert capsys.readouterr().err.count("finished, skipped") == 5
    assert (runs["scratch"] / "metrics.jsonl").read_text() == rows_before
    assert not any(run.joinpath("checkpoint.pt").exists() for run in runs.values())


def test_offline_uniform_sample_is_counted_and_named(setup, tmp_path):
    """The spec counted a uniform sample as the data's first episodes and did not name it."""
    from dataclasses import replace

    from scaledql.data.store.episodes import EpisodeSelection
    from scaledql.experiments.method_scores import _data_of

    out = tmp_path / "ft"
    run = {"eval_episodes": 1, "device": "cpu", "sample_workers": 0, "data_sample": "uniform"}
    cfg = OfflineFinetune(pretrained=setup["pretrained"], data=setup["data"], out=out,
                          fraction=0.5, steps=2, arms=["scratch"], run_overrides=run,
                          progress=False)
    run_offline(cfg)
    spec = json.loads((out / "finetune.json").read_text())
    freeway = open_dataset(setup["data"], ["freeway"]).game("freeway")
    kept = fraction_of(freeway, EpisodeSelection(0.5, "uniform"))
    assert kept != fraction_of(freeway, 0.5)  # 22 transitions, the first episodes' 19
    assert spec["sample"] == "uniform" and spec["kept"]["freeway"] == kept
    report = (out / "report.md").read_text()
    assert "episodes drawn uniformly over its run" in report
    assert f"- freeway: {kept['transitions']} of 32 transitions (a uniform sample of 3 of 5 " \
        "episodes)" in report
    config = json.loads((out / "scratch" / "freeway" / "seed_0" / "config.json").read_text())
    assert _data_of(config).endswith("(freeway), a uniform 50% sample")
    # a spec written before specs named the sample still resumes, and is brought up to date
    legacy = {k: v for k, v in spec.items() if k != "sample"}
    (out / "finetune.json").write_text(json.dumps({**legacy, "kept": {"freeway": fraction_of(
        freeway, 0.5)}}))
    run_offline(cfg)
    spec = json.loads((out / "finetune.json").read_text())
    assert spec["sample"] == "uniform" and spec["kept"]["freeway"] == kept
    # the other sample into the same folder is another experiment
    first = replace(cfg, run_overrides={**run, "data_sample": "first"})
    with pytest.raises(UserError, match="its sample is 'uniform', not 'first'"):
        run_offline(first)


@pytest.mark.parametrize(("argv", "message"), [
    (["--from", "NOPE"], "--from NOPE: no such run"),
    (["--games", "breakout"], "breakout was in the pretraining of"),
    (["--arms", "mae"], "an mae arm needs --mae RUN"),
    (["--arms", "nope"], "unknown offline fine-tuning arm 'nope'"),
    (["--fraction", "0"], "data_fraction must be in (0, 1]"),
    (["--set", "learner.lrr=1"], "learner option 'lrr'"),
])
def test_offline_bad_input_is_one_line(setup, tmp_path, capsys, argv, message):
    base = {"--from": str(setup["pretrained"]), "--data": str(setup["data"]),
            "--out": str(tmp_path / "ft"), "--steps": "2"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value.replace("NOPE", str(tmp_path / "nope"))
    args = [x for kv in base.items() for x in kv]
    assert main(["finetune", "offline", *args, "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message.replace("NOPE", str(tmp_path / "nope")) in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- online ------------------------------------------------------------------------------------
class Killed(Exception):
    """Stands for kill -9: nothing after it runs, no checkpoint is written."""


def online_cfg(setup, out: Path, **kw) -> OnlineFinetune:
    base = dict(pretrained=setup["pretrained"], game="breakout", out=out, steps=48,
                options=EnvOptions(sticky=0.3, max_episode_steps=30), num_envs=2,
                eval_every=16, eval_episodes=1, device="cpu", progress=False,
                schedule={"learning_starts": 8, "update_period": 2})
    return OnlineFinetune(**{**base, **kw})


def rows(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == kind]


def test_online_resumes_after_a_kill_with_the_encoder_frozen(setup, tmp_path, monkeypatch, capsys):
    cfg = online_cfg(setup, tmp_path / "on", arms=["pretrained-frozen"])
    real_add = RingReplay.add

    def add(self, *args):  # the process dies at env step 38, after the checkpoint at 32
        if self.size >= 38:
            raise Killed
        return real_add(self, *args)

    monkeypatch.setattr(RingReplay, "add", add)
    with pytest.raises(Killed):
        run_online_finetune(cfg)
    run = tmp_path / "on" / "pretrained-frozen" / "seed_0"
    assert load_checkpoint(run)["online"]["steps"] == 32
    monkeypatch.setattr(RingReplay, "add", real_add)
    capsys.readouterr()
    assert not run_online_finetune(cfg)["interrupted"]
    assert "resumed at env step 32" in capsys.readouterr().err
    saved = load_checkpoint(run)
    assert saved["online"]["steps"] == 48
    # one update per 2 env steps from step 8 on, counted across the kill: (48 - 8) / 2 + 1
    assert saved["step"] == saved["online"]["updates"] == 21
    assert [r["step"] for r in rows(run, "eval")] == [0, 16, 32, 48]
    ends = [r["step"] for r in rows(run, "episode")]
    assert ends == sorted(ends) and ends[-1] <= 48  # the killed run's later episodes are gone
    assert [p.name for p in run.glob("replay-*.npz")] == ["replay-000000048.npz"]
    with np.load(run / "replay-000000048.npz") as z:
        assert json.loads(str(z["meta"]))["size"] == 48
    # the encoder stayed the pretrained one through the kill and the resume
    src = encoder(online_state(setup["pretrained"]))
    assert all(torch.equal(saved["learner"]["online"][k], v) for k, v in src.items())
    # a finished run is skipped
    capsys.readouterr()
    run_online_finetune(cfg)
    assert "resumed" not in capsys.readouterr().err
    # ... also without its checkpoint and replay, as a study's archive restores a finished run
    (run / "checkpoint.pt").unlink()
    (run / "replay-000000048.npz").unlink()
    logged = (run / "metrics.jsonl").read_text()
    run_online_finetune(cfg)
    assert "resumed" not in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_text() == logged and not (run / "checkpoint.pt").exists()


def test_online_sigterm_saves_and_the_run_continues(setup, tmp_path, monkeypatch):
    cfg = online_cfg(setup, tmp_path / "on", steps=32)
    real_add = RingReplay.add

    def add(self, *args):  # a scheduler's SIGTERM arrives during env step 22
        if self.size == 20:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_add(self, *args)

    monkeypatch.setattr(RingReplay, "add", add)
    assert run_online_finetune(cfg)["interrupted"]
    run = tmp_path / "on" / "pretrained" / "seed_0"
    assert load_checkpoint(run)["online"]["steps"] == 22  # saved once that step was done
    monkeypatch.setattr(RingReplay, "add", real_add)
    assert not run_online_finetune(cfg)["interrupted"]
    assert load_checkpoint(run)["online"]["steps"] == 32
    assert [r["step"] for r in rows(run, "eval")] == [0, 16, 32]


def test_online_arms_heads_are_new_and_report(setup, tmp_path):
    # no learning yet (learning starts after the run): the weights are what the transfer left
    cfg = online_cfg(setup, tmp_path / "on", arms=["pretrained", "scratch", "mae", "dqn"],
                     steps=8, eval_every=8, mae=setup["mae"], dqn_steps=12,
                     schedule={"learning_starts": 100}, cql_alpha=0.2)
    assert not run_online_finetune(cfg)["interrupted"]
    src = online_state(setup["pretrained"])
    mine = online_state(tmp_path / "on" / "pretrained" / "seed_0")
    assert all(torch.equal(mine[k], v) for k, v in encoder(src).items())
    for k in mine:  # projection and heads start fresh (the pretrained breakout head is heads.0)
        if not k.startswith("torso.encoder.") and mine[k].shape == src[k].shape:
            assert not torch.equal(mine[k], src[k]), k
    scratch = online_state(tmp_path / "on" / "scratch" / "seed_0")
    assert not any(torch.equal(scratch[k], v) for k, v in encoder(src).items())
    config = json.loads((tmp_path / "on" / "pretrained" / "seed_0" / "config.json").read_text())
    assert config["learner"]["n_step"] == 1 and config["learner"]["cql_alpha"] == 0.2
    assert config["options"]["sticky"] == 0.3
    dqn = tmp_path / "on" / "dqn" / "seed_0"
    assert json.loads((dqn / "config.json").read_text())["algo"] == "dqn"
    assert load_checkpoint(dqn)["online"]["steps"] == 12
    report = (tmp_path / "on" / "report.md").read_text()
    assert "Online fine-tuning to a variant of breakout" in report and "'sticky': 0.3" in report
    assert all(f"| `{a}` |" in report for a in cfg.arms)
    assert "Improvement over the best alternative" in report
    assert main(["report", str(tmp_path / "on"), "--reps", "20", "--improvement-reps", "5"]) == 0
    over = json.loads((tmp_path / "on" / "report" / "report.json").read_text())
    assert sorted(over["methods"]) == sorted(cfg.arms)
    assert over["methods"]["dqn"]["final_steps"] == [12]


@pytest.mark.parametrize(("argv", "message"), [
    (["--game", "breakout"], "not a variant: choose --reversed-controls or --sticky"),
    (["--game", "breakout", "--mode", "1"], "--mode/--difficulty apply to the atari suite only"),
    (["--suite", "atari", "--game", "Pong", "--mode", "7"], "Pong has no mode 7 (available: [0, 1])"),
    (["--suite", "atari", "--game", "Pong", "--mode", "1"], "pretrained on minatar games, not atari"),
    (["--game", "breakout", "--sticky", "0.3", "--from", "NOPE"], "no such run"),
    (["--game", "breakout", "--sticky", "0.3", "--arms", "bc"], "unknown online fine-tuning arm"),
    (["--game", "pong"], "unknown minatar game 'pong'"),
])
def test_online_bad_input_is_one_line(setup, tmp_path, capsys, argv, message):
    base = {"--from": str(setup["pretrained"]), "--out": str(tmp_path / "on"), "--steps": "8"}
    flags = [x for kv in base.items() for x in kv if kv[0] not in argv]
    argv = [a.replace("NOPE", str(tmp_path / "nope")) for a in argv]
    assert main(["finetune", "online", *flags, *argv, "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "on" / "pretrained").exists()


def test_atari_online_variant_end_to_end(tmp_path, capsys):
    """Pong in mode 1 (gymnasium's vector env, since ale-py's cannot select modes)."""
    rng = np.random.default_rng(0)
    with GameWriter(tmp_path / "data", suite="atari", game="Pong", num_actions=6,
                    frame_shape=(1, 84, 84), stack=4,
                    provenance={"source": "test", "env_options": {"max_episode_steps": 20}}) as w:
        for length in (5, 7):
            w.add_episode(rng.integers(0, 255, (length + 1, 1, 84, 84), dtype=np.uint8),
                          rng.integers(0, 6, length), np.zeros(length, np.float32), True, False)
    run = tmp_path / "pre"
    train(RunConfig(data=str(tmp_path / "data"), out=str(run), steps=2, device="cpu",
                    sample_workers=0, learner=learner_class("scaled-ql").tiny_config()),
          progress=False)
    assert main(["finetune", "online", "--from", str(run), "--suite", "atari", "--game", "Pong",
                 "--mode", "1", "--max-episode-steps", "20", "--steps", "8", "--num-envs", "2",
                 "--eval-episodes", "1", "--eval-every", "4", "--learning-starts", "4",
                 "--update-period", "2",
                 "--out", str(tmp_path / "on"), "--no-progress", "--device", "cpu"]) == 0
    ft = tmp_path / "on" / "pretrained" / "seed_0"
    assert load_checkpoint(ft)["online"]["steps"] == 8 and load_checkpoint(ft)["step"] == 3
    assert json.loads((ft / "config.json").read_text())["options"]["mode"] == 1
    assert [r["step"] for r in rows(ft, "eval")] == [0, 4, 8]
    assert "report.md" in capsys.readouterr().out


def test_report_needs_an_experiment_folder(tmp_path, capsys):
    assert main(["finetune", "report", str(tmp_path)]) == 2
    assert "holds no fine-tuning experiment (no finetune.json)" in capsys.readouterr().err
