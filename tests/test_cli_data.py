"""`scaledql data ...` as a user runs it: JSON info, imports, exports, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaledql.cli import main
from test_dqn_replay import NUM_ACTIONS, LoggedBuffer, play


def test_info_json_and_table(tmp_path, write_game, capsys):
    write_game(tmp_path, "breakout", [(3, True, False), (4, False, True), (2, False, False)])
    write_game(tmp_path, "asterix", [(5, True, False)])
    assert main(["data", "info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["games"]) == {"asterix", "breakout"}
    b = info["games"]["breakout"]
    # transitions include the unfinished trailing episode; episodes count finished ones only
    assert (b["transitions"], b["episodes"], b["episode_returns"]) == (9, 2, [6.0, 10.0])
    assert main(["data", "info", str(tmp_path)]) == 0
    assert "breakout" in capsys.readouterr().out


def test_import_dqn_replay_command(tmp_path, capsys):
    buf = LoggedBuffer(tmp_path / "src" / "Pong" / "1" / "replay_logs", capacity=10)
    play(buf, [5, 7, 6, 4], every_cycle_logged=True)
    out = tmp_path / "data"
    # Pong's minimal action set has 6 actions; the fixture uses 4 of them.
    assert NUM_ACTIONS <= 6
    assert main(["data", "import", "dqn-replay", str(tmp_path / "src"), "--game", "pong",
                 "--out", str(out), "--checkpoints", "0-1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["games"]["Pong"]
    assert info["provenance"]["runs"] == {"1": [0, 1]}
    assert "--checkpoints 0-1" in info["provenance"]["command"]
    assert info["rewards_clipped"] is True
    # Running it again is refused without --overwrite: one line, exit 2.
    assert main(["data", "import", "dqn-replay", str(tmp_path / "src"), "--game", "Pong",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err


@pytest.mark.parametrize("argv", [
    ["data", "info", "{tmp}/missing"],
    ["data", "import", "dqn-replay", "{tmp}", "--game", "Pong", "--out", "{tmp}/o"],
    ["data", "import", "dqn-replay", "{tmp}", "--game", "NoSuchGame", "--out", "{tmp}/o"],
    ["data", "import", "dqn-replay", "{tmp}", "--game", "Pong", "--out", "{tmp}/o",
     "--checkpoints", "3-1"],
    ["data", "import", "minari", "nowhere/none-v0", "--out", "{tmp}/o"],
    ["data", "info"],
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    try:
        code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_minari_export_then_import_commands(tmp_path, capsys, monkeypatch):
    from scaledql.data.store.writer import GameWriter

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    grids = 255 * np.random.default_rng(0).integers(0, 2, (4, 10, 10, 10), dtype=np.uint8)
    with GameWriter(tmp_path / "a", suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1) as w:
        w.add_episode(grids, np.array([0, 1, 2]), np.array([1, 2, 3], np.float32), True, False)
    assert main(["data", "export", "minari", str(tmp_path / "a"), "--game", "breakout",
                 "--dataset-id", "scaledql/breakout-v0"]) == 0
    assert main(["data", "import", "minari", "scaledql/breakout-v0", "--out",
                 str(tmp_path / "b"), "--game", "breakout"]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "b"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["games"]["breakout"]
    assert (info["transitions"], info["episode_returns"]) == (3, [6.0])


def test_import_several_games_runs_jobs_and_card(tmp_path, capsys):
    for game, first in (("Pong", 1), ("Breakout", 100)):
        for run in ("1", "2", "3"):
            buf = LoggedBuffer(tmp_path / "src" / game / run / "replay_logs", capacity=10)
            play(buf, [5, 7, 6, 4], first_label=first, every_cycle_logged=True)
    out = tmp_path / "data"
    assert main(["data", "import", "dqn-replay", str(tmp_path / "src"), "--games",
                 "pong,breakout", "--runs", "1-2", "--fraction", "0.5", "--out", str(out),
                 "--jobs", "2"]) == 0
    assert capsys.readouterr().out.count("wrote") == 2
    assert main(["data", "card", str(out), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    pong = card["games"]["Pong"]
    assert pong["runs"] == {"1": [0, 1], "2": [0, 1]} and pong["checkpoint_files"] == 4
    assert pong["rewards_clipped"] and card["aggregate"]["iqm_ci"][0] <= card["aggregate"]["iqm"]
    text = (out / "DATACARD.md").read_text()
    assert "| Pong | dqn-replay | 1: 0-1; 2: 0-1 | 4 |" in text and "IQM" in text
    assert main(["data", "card", str(out)]) == 0
    assert capsys.readouterr().out == text
    assert main(["data", "info", str(out)]) == 0  # the card file is not a game
    assert "2 games" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--game", "Pong", "--games", "Pong,Breakout"],
    ["--games", "Pong", "--jobs", "0"],
    ["--games", "Pong", "--runs", "3-1"],
    ["--games", "Pong,NoSuchGame"],
])
def test_bad_import_options_are_one_line(tmp_path, capsys, argv):
    try:
        code = main(["data", "import", "dqn-replay", str(tmp_path), "--out",
                     str(tmp_path / "o"), *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
