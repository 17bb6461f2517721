"""``scaledql play`` (videos of a policy) and ``scaledql export`` (safetensors, config, model
card) on a tiny trained run; exported folders load wherever a run does. Per-learner round trips
and recordings: ``test_conformance.py``; bad input: the corpus (``corpus_commands.py``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scaledql.checkpoint import load_checkpoint, load_learner
from scaledql.cli import main
from scaledql.data.store.writer import GameWriter
from scaledql.export import export_agent

NET = ["--encoder", "nature", "--width", "0.25", "--feature-dim", "16", "--batch-size", "8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-step Scaled QL run evaluated at steps 1 and 2, both checkpoints kept; its data was
    collected with a 15-step episode cap (which playing must respect)."""
    root = tmp_path_factory.mktemp("play")
    rng = np.random.default_rng(0)
    for game, actions in (("breakout", 3), ("asterix", 5)):
        with GameWriter(root / "data", suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1,
                        provenance={"source": "test", "command": "made by hand",
                                    "env_options": {"max_episode_steps": 15}}) as w:
            for length in (7, 12, 5, 9):
                w.add_episode(255 * rng.integers(0, 2, (length + 1, 10, 10, 10), dtype=np.uint8),
                              rng.integers(0, actions, length),
                              rng.integers(0, 2, length).astype(np.float32),
                              terminated=True, truncated=False)
    out = root / "run"
    assert main(["train", "--data", str(root / "data"), "--out", str(out), "--steps", "2", *NET,
                 "--eval-every", "1", "--eval-episodes", "2", "--keep-every", "1",
                 "--no-progress", "--device", "cpu"]) == 0
    return out


def frames(gif: Path) -> list[np.ndarray]:
    with Image.open(gif) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
        return out


def test_play_writes_a_gif_with_an_overlay(run, tmp_path, capsys, monkeypatch):
    from scaledql.suites.minatar import MinAtarSuite

    seen = []
    real = MinAtarSuite.make_env
    monkeypatch.setattr(MinAtarSuite, "make_env",
                        lambda self, game, options=None: seen.append(options) or
                        real(self, game, options))
    video = tmp_path / "out" / "breakout.gif"
    assert main(["play", "--checkpoint", str(run), "--game", "breakout", "--episodes", "2",
                 "--max-steps", "0", "--out", str(video), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "breakout episode 1: return" in out and "breakout episode 2: return" in out
    steps = [int(line.split(" in ")[1].split()[0]) for line in out.splitlines() if " in " in line]
    assert seen and all(o.max_episode_steps == 15 for o in seen)  # the checkpoint's cap
    assert all(1 <= s <= 15 for s in steps)
    pics = frames(video)
    assert len(pics) == sum(s + 1 for s in steps)  # the start of each episode, then each step
    assert pics[0].shape == (320 + 24, 320, 3)
    band = pics[0][320:]
    assert (band == 255).all(-1).any()  # white overlay text
    assert len({p[:320].tobytes() for p in pics}) > 1  # the game moves


def test_play_max_steps_cuts_and_is_reproducible(run, tmp_path, capsys):
    argv = ["play", "--checkpoint", str(run), "--game", "asterix", "--max-steps", "3",
            "--seed", "5", "--device", "cpu", "--out"]
    assert main([*argv, str(tmp_path / "a.gif")]) == 0
    assert "recording cut at --max-steps" in capsys.readouterr().out
    assert main([*argv, str(tmp_path / "b.gif")]) == 0
    a, b = frames(tmp_path / "a.gif"), frames(tmp_path / "b.gif")
    assert len(a) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_play_mp4(run, tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "v.mp4"
    assert main(["play", "--checkpoint", str(run), "--game", "breakout", "--max-steps", "5",
                 "--fps", "10", "--out", str(video), "--device", "cpu"]) == 0
    assert video.read_bytes()[4:8] == b"ftyp"
    count, seconds = ffmpeg.count_frames_and_secs(str(video))
    assert count >= 6 and seconds > 0.5  # 6 frames, the last held a second
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_play_mp4_without_imageio_ffmpeg_is_one_line(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if absent
    assert main(["play", "--checkpoint", str(run), "--game", "breakout", "--out",
                 str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "needs imageio-ffmpeg" in err[0] and ".gif" in err[0]
    assert not list(tmp_path.iterdir())


def test_play_atari_frames_come_from_the_emulator(tmp_path):
    from scaledql.play import PlayConfig, record
    from scaledql.policies import RandomPolicy
    from scaledql.suites import EnvOptions

    policy = RandomPolicy(["Pong"], [6], seed=0)  # any policy plays; this one needs no training
    episodes = record(tmp_path / "pong.gif", "atari", "Pong", policy, EnvOptions(),
                      PlayConfig(max_steps=3))
    assert episodes[0]["steps"] == 3
    pics = frames(tmp_path / "pong.gif")
    assert len(pics) == 4 and pics[0].shape == (2 * 210 + 24, 2 * 160, 3)
    assert len(np.unique(pics[-1][:420].reshape(-1, 3), axis=0)) > 2  # colour, not a grid


def test_export_writes_weights_config_and_card(run, tmp_path, capsys):
    out = tmp_path / "agent"
    assert main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    assert "model.safetensors" in printed and "bytes" in printed
    config = json.loads((out / "config.json").read_text())
    ckpt = load_checkpoint(run)
    assert config["run_config"] == ckpt["run_config"] and config["step"] == 2
    assert config["data"]["found"] and config["data"]["identity"] == ckpt["data_identity"]
    assert config["data"]["games"]["breakout"]["provenance"]["command"] == "made by hand"
    report = json.loads((run / "eval" / "step_00000002.json").read_text())
    assert config["evaluation"]["aggregate"] == report["aggregate"]
    card = (out / "README.md").read_text()
    iqm = report["aggregate"]["iqm"]
    lo, hi = report["aggregate"]["iqm_ci"]
    assert f"| IQM | {iqm:.3f} | [{lo:.3f}, {hi:.3f}] |" in card
    for text in ("asterix (5 actions)", "breakout (3 actions)", "`eval/step_00000002.json`",
                 "| breakout | 2 |", str(ckpt["data_identity"])[:16], "made by hand",
                 "--algo scaled-ql --config train.toml", "max_episode_steps"):
        assert text in card, text


def test_the_cards_use_commands_run_verbatim_from_anywhere(run, tmp_path, capsys, monkeypatch):
    """The card once said ``--checkpoint agent`` (the folder's name), which fails anywhere but
    in the folder's parent: its commands must run as printed, from any directory."""
    import re
    import shlex

    out = tmp_path / "exports" / "my agent"  # a space: the path must come quoted
    export_agent(run, out)
    card = (out / "README.md").read_text()
    use = re.search(r"## Use\n\n```bash\n(.*?)```", card, re.S).group(1).splitlines()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ran = 0
    for line in use:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "scaledql"
        if argv[1] in ("evaluate", "play"):  # the train line names the user's NEW_DATA
            assert argv[argv.index("--checkpoint") + 1] == str(out.resolve())
            assert main(argv[1:]) == 0, line
            ran += 1
    assert ran == 2 and (elsewhere / "asterix.gif").exists()
    assert "--init-from " + shlex.quote(str(out.resolve())) in card
    capsys.readouterr()


def test_exported_agent_loads_wherever_a_run_does(run, tmp_path, capsys):
    out = tmp_path / "agent"
    export_agent(run, out)
    a, _ = load_learner(run, "cpu")
    b, payload = load_learner(out, "cpu")
    obs = torch.from_numpy(255 * np.random.default_rng(1).integers(0, 2, (8, 10, 10, 10),
                                                                    dtype=np.uint8))
    for game_id in (0, 1):
        assert torch.equal(a.q_values(obs, game_id), b.q_values(obs, game_id))
    assert payload["env_options"]["max_episode_steps"] == 15
    evaluate = ["evaluate", "--games", "breakout", "--episodes", "2", "--no-progress", "--json",
                "--checkpoint"]
    assert main([*evaluate, str(run)]) == 0
    want = json.loads(capsys.readouterr().out)["games"]
    assert main([*evaluate, str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["games"] == want
    assert main(["play", "--checkpoint", str(out), "--game", "asterix", "--max-steps", "3",
                 "--out", str(tmp_path / "v.gif"), "--device", "cpu"]) == 0
    from scaledql.finetune.common import read_run

    assert read_run(out, "--from", "scaled-ql")["step"] == 2
    new = tmp_path / "from-export"
    assert main(["train", "--data", load_checkpoint(run)["run_config"]["data"], "--out", str(new),
                 "--steps", "1", *NET, "--init-from", str(out), "--freeze-encoder",
                 "--eval-episodes", "1", "--no-progress", "--device", "cpu"]) == 0
    enc = {k: v for k, v in load_checkpoint(new)["learner"]["online"].items()
           if k.startswith("torso.encoder.")}
    assert enc and all(torch.equal(v, a.online.state_dict()[k]) for k, v in enc.items())


def test_export_of_an_earlier_step_and_replacing_an_export(run, tmp_path):
    out = tmp_path / "agent"
    export_agent(run / "checkpoints" / "step_00000001.pt", out)
    config = json.loads((out / "config.json").read_text())
    assert config["step"] == 1 and config["evaluation"]["step"] == 1
    export_agent(run, out)  # an earlier export is replaced
    assert json.loads((out / "config.json").read_text())["step"] == 2
    export_agent(run, tmp_path / "twin")  # the same checkpoint, the same bytes
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "twin" / name).read_bytes() == (out / name).read_bytes()
    shutil.rmtree(tmp_path / "twin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent"]  # no temporaries left
    again = tmp_path / "again"
    export_agent(out, again)  # an export of an export keeps what the first knew
    kept = json.loads((again / "config.json").read_text())
    assert kept["evaluation"] == json.loads((out / "config.json").read_text())["evaluation"]


def test_a_failed_export_leaves_nothing(run, tmp_path, monkeypatch):
    import scaledql.modelcard

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(scaledql.modelcard, "model_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_agent(run, tmp_path / "agent")
    assert not list(tmp_path.iterdir())


def test_the_card_counts_channels_in_words():
    """An Atari agent's card said "1 channels a frame"."""
    from scaledql.modelcard import _agent

    def observation(channels: int) -> str:
        c = {"games": ["Pong"], "num_actions": [6], "suite": "atari", "algo": "scaled-ql",
             "obs_shape": [4 * channels, 84, 84], "frame_channels": channels, "step": 1}
        return next(x for x in _agent(c, "AGENT") if x.startswith("| observation"))

    assert observation(1) == "| observation | uint8[4, 84, 84] (1 channel a frame) |"
    assert "(10 channels a frame)" in observation(10)


def test_the_card_names_the_share_of_data_as_it_was_drawn():
    """A run on a uniform 5% sample was carded as "the first 0.05 of each game's data"."""
    from scaledql.export import checked_data
    from scaledql.modelcard import _data

    def where(**share) -> str:
        return _data({"data": checked_data({"path": "d", **share}, "x")})[2]

    assert where() == "Store `d`."
    assert where(fraction=0.05) == "Store `d`; the first 5% of each game's data."
    assert where(fraction=0.05, sample="uniform") == \
        "Store `d`; a uniform 5% sample of each game's data."
