"""Every bad input is one line on stderr and exit code 2: the corpus (``corpus_*.py``).

Each case runs ``scaledql.cli.main`` in-process and asserts: exit code 2; stderr is exactly one
line, ``error: ...``, matching what the case says the problem is; no traceback; and nothing
half-written: no file under the case's folder is new or changed, except where the case set its
inputs up. The command lines are valid baselines plus one bad thing, and the baselines are run
too (they succeed), so every case fails because of its one bad thing.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from corpus_commands import BASELINES as COMMAND_BASELINES
from corpus_commands import CASES as COMMAND_CASES
from corpus_fuzz import CASES as FUZZ_CASES
from corpus_import import CASES as IMPORT_CASES
from corpus_setup import Assets, Case, Ctx
from corpus_share import BASELINES as SHARE_BASELINES
from corpus_share import CASES as SHARE_CASES
from corpus_store import CASES as STORE_CASES
from scaledql.cli import main

CASES: list[Case] = [*STORE_CASES, *IMPORT_CASES, *COMMAND_CASES, *SHARE_CASES, *FUZZ_CASES]
BASELINES = {**COMMAND_BASELINES, **SHARE_BASELINES}


def _make_assets(root: Path) -> Assets:
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    from scaledql.agents.base import Problem
    from scaledql.agents.dqn import DQN
    from scaledql.agents.scaled_ql import ScaledQLConfig
    from scaledql.checkpoint import learner_payload, save_checkpoint
    from scaledql.data.store.writer import GameWriter
    from scaledql.training.config import RunConfig
    from scaledql.training.offline_loop import train
    from test_dqn_replay import LoggedBuffer, play

    rng = np.random.default_rng(0)
    store = root / "store"
    for game, actions in (("breakout", 3), ("asterix", 5)):
        with GameWriter(store, suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1,
                        provenance={"source": "test", "env_options": {"max_episode_steps": 20}}
                        ) as w:
            for t, term, trunc in ((4, True, False), (3, False, True), (2, False, False)):
                w.add_episode(255 * rng.integers(0, 2, (t + 1, 10, 10, 10), dtype=np.uint8),
                              np.arange(t) % actions, np.arange(1, t + 1, dtype=np.float32),
                              term, trunc)
    run = root / "run"
    learner = ScaledQLConfig(encoder="nature", width=0.25, feature_dim=8, batch_size=4)
    train(RunConfig(data=str(store), out=str(run), steps=2, checkpoint_every=2, log_every=1,
                    device="cpu", sample_workers=0, learner=learner), progress=False)
    collect_ckpt = root / "collect.pt"
    dqn = DQN(DQN.tiny_config(), Problem((10, 10, 10), (3,), ("breakout",), 10), "cpu")
    save_checkpoint({**learner_payload(dqn, "minatar", {}), "seed": 0}, collect_ckpt)
    src = root / "src"
    play(LoggedBuffer(src / "Pong" / "1" / "replay_logs", capacity=10), [5, 7, 6, 4],
         every_cycle_logged=True)
    mds = root / "mds"
    os.environ["MINARI_DATASETS_PATH"] = str(mds)
    try:
        buffers = []
        for i, t in enumerate((3, 2)):
            buffers.append(EpisodeBuffer(
                id=i, observations=rng.integers(0, 2, (t + 1, 10, 10, 4)).astype(bool),
                actions=np.arange(t) % 3, rewards=[1.0] * t,
                terminations=[False] * (t - 1) + [True], truncations=[False] * t))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers(
                "toy/breakout-v0", buffers, action_space=gym.spaces.Discrete(3),
                observation_space=gym.spaces.Box(0, 1, (10, 10, 4), bool), jpeg_encoding=False)
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    return Assets(store=store, run=run, src=src, mds=mds, collect_ckpt=collect_ckpt)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    return _make_assets(tmp_path_factory.mktemp("assets"))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, mtime) and folder under ``root``: an empty folder left behind by a
    refused command (a run folder made before its inputs were checked) counts as written."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[str((Path(dirpath) / d).relative_to(root)) + "/"] = (0, 0)
        for f in files:
            p = Path(dirpath) / f
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _run(ctx: Ctx, argv: list[str], monkeypatch) -> int:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ctx.tmp / "mds"))
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return int(exc.code or 0)


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_exit_2(c, assets, tmp_path, capsys, monkeypatch):
    ctx = Ctx(tmp_path, assets)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ctx.tmp / "mds"))
    if c.setup is not None:
        c.setup(ctx)
    argv = [ctx.resolve(a) for a in c.argv]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = _run(ctx, argv, monkeypatch)
    finally:
        ctx.release()
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == 2, f"exit {code} (silently accepted?)\n{err}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(c.expect, lines[0]), f"{lines[0]!r} does not say {c.expect!r}"
    after = _snapshot(tmp_path)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert not changed, f"written despite the error: {changed}"


def test_the_corpus_is_large_and_its_names_distinct():
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_the_baselines_succeed(name, assets, tmp_path, capsys, monkeypatch):
    from corpus_commands import demo_folder, eval_runs

    ctx = Ctx(tmp_path, assets)
    demo_folder(ctx)
    eval_runs(ctx)
    code = _run(ctx, [ctx.resolve(a) for a in BASELINES[name]], monkeypatch)
    assert code == 0, capsys.readouterr().err


def test_the_import_baselines_succeed(assets, tmp_path, capsys, monkeypatch):
    from corpus_import import DQN, MI

    ctx = Ctx(tmp_path, assets)
    ctx.mds()
    for argv in (DQN, MI, ["data", "verify", "{store}"], ["data", "info", "{store}"]):
        assert _run(ctx, [ctx.resolve(a) for a in argv], monkeypatch) == 0, \
            capsys.readouterr().err


def test_the_installed_command_exits_2_with_one_line(assets, tmp_path):
    """The same contract through a real process (interpreter exit code, real stderr)."""
    import subprocess
    import sys

    import scaledql

    env = {**os.environ, "PYTHONPATH": str(Path(scaledql.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "scaledql", "train", "--data", str(assets.store),
                           "--out", str(tmp_path / "run"), "--lr", "nan"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: scaledql train: argument --lr: 'nan' is not a finite number (see --help)"]
    assert not (tmp_path / "run").exists()
