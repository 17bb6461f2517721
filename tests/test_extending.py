"""Open to extension (docs/extending.md): user learners and suites, GymSuite, build_store.

The documented example runs as written from outside the package: its module and scripts are
written to a temporary folder and run there in fresh processes, its commands through
``python -m scaledql`` (the ``scaledql`` command's own code path).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import scaledql as sq
from scaledql.agents import registry
from scaledql.agents.configs import ScaledQLConfig
from scaledql.agents.scaled_ql import ScaledQL
from scaledql.errors import UserError
from scaledql.suites import register_suite
from scaledql.suites.gym import GymSuite

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def named_block(first_line: str) -> str:
    return next(b for b in doc_blocks("python") if b.startswith(first_line + "\n"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SCALEDQL_PLUGINS", "PYTHONPATH")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def run(args: list[str], cwd: Path, **env: str) -> str:
    done = subprocess.run(args, cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.heavy
def test_the_documented_example_runs_from_outside_the_package(tmp_path):
    (tmp_path / "my_plugin.py").write_text(named_block("# my_plugin.py"))
    (tmp_path / "build.py").write_text(named_block("# build.py"))
    printed = []
    for line in doc_blocks("bash")[0].strip().splitlines():
        words = shlex.split(line)
        if words[0] == "python":
            printed.append(run([sys.executable, *words[1:]], tmp_path))
        else:
            assert words[0] == "scaledql", line
            printed.append(run([sys.executable, "-m", "scaledql", *words[1:]], tmp_path))
    assert printed[0].splitlines()[-1] == "['catch', 'fast_catch']"
    store = json.loads((tmp_path / "data" / "catch" / "manifest.json").read_text())
    assert store["suite"] == "catch" and store["frame_shape"] == [1, 12, 12]
    assert store["stack"] == 2 and store["num_actions"] == 3 and store["counts"]["episodes"] == 30
    run_dir = tmp_path / "runs" / "warmup"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "warmup-ql" and config["learner"]["cql_warmup_steps"] == 10
    assert config["learner"]["feature_dim"] == 32 and config["eval_episodes"] == 5  # the preset
    report = json.loads(printed[2])
    assert report["suite"] == "catch" and set(report["games"]) == {"catch", "fast_catch"}
    assert all(g["normalized"] is not None for g in report["games"].values())
    assert "iqm" in report["aggregate"]
    laplace = json.loads((tmp_path / "runs" / "laplace" / "config.json").read_text())
    assert laplace["learner"]["loss"] == "hl-laplace" and laplace["algo"] == "warmup-ql"
    assert sq.Run(tmp_path / "runs" / "laplace").finished

    api = next(b for b in doc_blocks("python") if "sq.make(" in b)
    (tmp_path / "api.py").write_text(api)
    out = run([sys.executable, "api.py"], tmp_path).splitlines()[-1]
    assert out.startswith("Agent(warmup-ql, games=['catch', 'fast_catch'], suite='catch', "
                          "step=10, run='runs/warmup-api') "), out


def test_entry_points_name_learners_and_suites_without_a_flag(tmp_path):
    """An installed package's entry points: listed by --help unloaded, loaded when used."""
    (tmp_path / "my_plugin.py").write_text(named_block("# my_plugin.py"))
    info = tmp_path / "my_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[scaledql.learners]\nwarmup-ql = my_plugin:WarmupQL\n"
                                           "\n[scaledql.suites]\ncatch = my_plugin:make_suite\n"
                                           "\n[scaledql.value_targets]\n"
                                           "hl-laplace = my_plugin:HLLaplace\n")
    path = {"PYTHONPATH": str(tmp_path)}
    help_text = run([sys.executable, "-m", "scaledql", "train", "--help"], tmp_path, **path)
    assert "warmup-ql: plugin learner (my_plugin:WarmupQL)" in " ".join(help_text.split())
    assert "hl-laplace: plugin value target (my_plugin:HLLaplace)" in " ".join(help_text.split())
    assert "{c51,hl-gauss,two-hot,mse,hl-laplace}" in help_text
    suites = json.loads(run([sys.executable, "-m", "scaledql", "suites", "--suite", "catch",
                             "--json"], tmp_path, **path))
    assert suites["catch"]["games"]["fast_catch"]["obs_shape"] == [2, 12, 12]
    code = ("import scaledql as sq; c = sq.learner_class('warmup-ql'); "
            "print(c.__module__, c.summary, sq.get_suite('catch'))")
    out = run([sys.executable, "-c", code], tmp_path, **path)
    assert out.strip() == ("my_plugin Scaled QL whose CQL term starts after cql_warmup_steps "
                           "gradient steps. GymSuite('catch', games=['catch', 'fast_catch'])")
    code = ("from scaledql.value_targets import value_target_class as c; t = c('hl-laplace'); "
            "print(t.__module__, t.summary)")
    out = run([sys.executable, "-c", code], tmp_path, **path)
    assert out.strip() == ("my_plugin Histogram loss with a Laplace-smoothed target: b = 0.5 bin "
                           "widths, heavier tails.")


def test_plugin_errors_are_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    cases = [(["--plugin", "no_such_module", "suites"], "error: plugin 'no_such_module': No "
              "module named 'no_such_module'"),
             (["suites", "--plugin=./broken.py"], "error: plugin './broken.py' failed to import: "
              "RuntimeError: no GPU here"),
             (["--plugin"], "error: --plugin needs a module name or a .py file"),
             (["--plugin", "broken", "suites"], "./broken.py is not on sys.path")]
    # the installed command: unlike ``python -m`` it does not put the current folder on sys.path
    command = Path(sys.executable).with_name("scaledql")
    for args, message in cases:
        done = subprocess.run([str(command), *args], cwd=tmp_path, env=clean_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- registration, in this process (the registries are restored after each test) -------------
@pytest.fixture
def registries(monkeypatch):
    from scaledql import suites

    monkeypatch.setattr(registry, "_PLUGINS", {})
    monkeypatch.setattr(suites, "_REGISTERED", {})


@dataclass
class _Config(ScaledQLConfig):
    extra: int = 1


def _learner(name: str, config: type = _Config) -> type:
    return type("Custom", (ScaledQL,), {"name": name, "config_class": config,
                                        "__doc__": "A custom learner.\n\nMore text.",
                                        "__module__": "user_code"})


def test_register_accepts_classes_from_outside_the_package(registries):
    cls = registry.register(_learner("custom-ql"))
    assert registry.learner_class("custom-ql") is cls and "custom-ql" in sq.learner_names()
    assert registry.learner_config_class("custom-ql") is _Config
    assert registry.learner_summary("custom-ql") == "A custom learner."
    assert registry.register(cls) is cls  # again: a no-op
    with pytest.raises(ValueError, match="'bc' is a built-in learner"):
        registry.register(_learner("bc"))
    with pytest.raises(ValueError, match="two learners named 'custom-ql'"):
        registry.register(type("Other", (cls,), {"__module__": "elsewhere"}))
    with pytest.raises(ValueError, match="lower-case name"):
        registry.register(_learner("Bad Name"))
    with pytest.raises(TypeError, match="config_class must be a dataclass"):
        registry.register(_learner("no-config", config=dict))
    with pytest.raises(TypeError, match="not a subclass"):
        registry.register(type("NotALearner", (), {"name": "x", "__module__": "user_code"}))
    with pytest.raises(UserError, match=r"unknown learner 'nope'.*custom-ql"):
        registry.learner_class("nope")


class _Tiles(gym.Env):
    """Boolean (8, 9) tiles, or float ones, or a continuous action space: what GymSuite reads."""

    def __init__(self, dtype=bool, actions=None):
        self.observation_space = gym.spaces.Box(0, 1, (8, 9), dtype)
        self.action_space = actions or gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        obs = np.zeros((8, 9), self.observation_space.dtype)
        obs[self.t % 8, self.t % 9] = 1
        return obs

    def step(self, action):
        self.t += 1
        return self._obs(), float(action), False, False, {}


def test_gym_suite_wrappers_and_scores(registries):
    suite = register_suite(GymSuite("tiles", {"tiles": _Tiles, "more": _Tiles}, stack=3,
                                    max_episode_steps=4, reference_scores={"tiles": (0.0, 4.0)}))
    assert sq.get_suite("tiles") is suite and "tiles" in sq.suite_names()
    spec = suite.spec("tiles")
    assert (spec.num_actions, spec.frame_shape, spec.obs_shape) == (2, (1, 8, 9), (3, 8, 9))
    env = suite.make_env("tiles")
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (3, 8, 9)
    assert not obs[:2].any() and obs[2, 0, 0] == 255  # zero frames before the first
    steps = 0
    while True:
        prev = obs
        obs, _, terminated, truncated, _ = env.step(1)
        steps += 1
        assert np.array_equal(obs[:2], prev[1:])  # oldest first
        if terminated or truncated:
            break
    assert steps == 4 and truncated  # the suite's step cap
    from scaledql.suites.scores import has_reference, normalize

    assert has_reference("tiles", "tiles") and not has_reference("tiles", "more")
    assert float(normalize("tiles", "tiles", 3.0)) == 0.75
    resized = GymSuite("big", {"t": _Tiles}, stack=1, frame_size=(10, 12)).make_env("t")
    assert resized.reset(seed=0)[0].shape == (1, 10, 12)
    with pytest.raises(UserError, match="f game 't': observations must be uint8"):
        GymSuite("f", {"t": lambda: _Tiles(np.float32)}).spec("t")
    with pytest.raises(UserError, match="actions must be Discrete"):
        GymSuite("c", {"t": lambda: _Tiles(actions=gym.spaces.Box(-1, 1, (1,)))}).spec("t")
    with pytest.raises(UserError, match="--full-action-space applies to the atari suite only"):
        suite.spec("tiles", sq.EnvOptions(full_action_space=True))
    with pytest.raises(ValueError, match="built-in suite"):
        register_suite(GymSuite("atari", {"t": _Tiles}))
    with pytest.raises(ValueError, match="already registered"):
        register_suite(GymSuite("tiles", {"t": _Tiles}))
    assert (suite.default_sticky, suite.default_max_episode_steps) == (0.0, 4)
    assert (sq.get_suite("minatar").default_sticky, sq.get_suite("atari").default_sticky) \
        == (0.1, 0.25)


class _Dot(gym.Env):
    """A red dot moving right on RGB (6, 5, 3) frames: a colour game for ``play``."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (6, 5, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        obs = np.zeros((6, 5, 3), np.uint8)
        obs[2, self.t % 5] = (255, 0, 0)
        return obs

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t == 4, False, {}


def test_a_plugin_suite_renders_and_plays(registries, tmp_path):
    """A suite registered as docs/extending.md shows draws its games (``Suite.render``: the
    newest frame, scaled up) and ``play`` records them; one without ``render`` is one error."""
    from PIL import Image

    from scaledql.play import PlayConfig, record
    from scaledql.policies import RandomPolicy

    register_suite(GymSuite("dots", {"dot": _Dot, "tiles": _Tiles}, stack=2, max_episode_steps=50))
    suite = sq.get_suite("dots")
    env = suite.make_env("dot")
    obs, _ = env.reset(seed=0)
    picture = suite.render(env, obs)
    assert picture.dtype == np.uint8 and picture.shape == (6 * 32, 5 * 32, 3)  # even, >= 160 wide
    assert (picture[2 * 32, 0] == (255, 0, 0)).all() and not picture[0, 0].any()
    tiles = suite.make_env("tiles")
    gray = suite.render(tiles, tiles.reset(seed=0)[0])
    assert gray.shape == (8 * 18, 9 * 18, 3) and (gray[0, 0] == 255).all()

    episodes = record(tmp_path / "dot.gif", "dots", "dot", RandomPolicy(["dot"], [2], seed=0),
                      sq.EnvOptions(), PlayConfig(episodes=1, max_steps=0))
    assert episodes == [{"episode": 1, "steps": 4, "return": 4.0, "ended": "terminated"}]
    with Image.open(tmp_path / "dot.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (5 * 32, 6 * 32 + 24)  # the overlay band below

    class Unseen(GymSuite):
        render = None  # a suite written before Suite.render

    register_suite(Unseen("unseen", {"dot": _Dot}))
    with pytest.raises(UserError, match="cannot render 'unseen' games"):
        record(tmp_path / "u.gif", "unseen", "dot", RandomPolicy(["dot"], [2], seed=0),
               sq.EnvOptions(), PlayConfig())
    assert not (tmp_path / "u.gif").exists()


def test_suites_answer_for_themselves(registries):
    """What used to branch on a suite's name is the suite's own attribute."""
    from scaledql.suites import suite_attribute

    assert suite_attribute("minatar", "binary_frames", False) is True
    assert suite_attribute("atari", "binary_frames", False) is False
    assert "human-normalized" in suite_attribute("atari", "data_card_note", None)
    assert suite_attribute("minatar", "data_card_note", None) is None
    register_suite(GymSuite("dots", {"dot": _Dot}))
    assert suite_attribute("dots", "binary_frames", False) is False
    assert suite_attribute("not-loaded", "binary_frames", "default") == "default"


def test_a_suite_without_its_defaults_is_refused(registries):
    class NoDefaults:
        name = "bare"
        games = named_lists = resolve_games = spec = make_env = make_vector_env = print

    with pytest.raises(TypeError, match="suite 'bare' has no default_sticky"):
        register_suite(NoDefaults())


def _play(suite, game: str, episodes: int, seed: int = 0):
    env, rng = suite.make_env(game), np.random.default_rng(seed)
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        frames, actions, rewards, done = [obs], [], [], False
        while not done:
            a = int(rng.integers(2))
            obs, r, terminated, truncated, _ = env.step(a)
            frames.append(obs)
            actions.append(a)
            rewards.append(r)
            done = terminated or truncated
        yield sq.Episode(np.stack(frames), np.array(actions), np.array(rewards, np.float32),
                         terminated, truncated)


def test_build_store_validates_and_reads_back(registries, tmp_path):
    suite = register_suite(GymSuite("tiles", {"tiles": _Tiles}, stack=2, max_episode_steps=5))
    episodes = list(_play(suite, "tiles", 3))
    path = sq.build_store(tmp_path / "d", iter(episodes), suite="tiles", game="tiles",
                          provenance={"note": "test"})
    game = sq.open_dataset(tmp_path / "d").game("tiles")
    assert game.num_transitions == 15 and game.manifest["provenance"]["note"] == "test"
    assert game.manifest["counts"]["truncated"] == 3 and path == tmp_path / "d" / "tiles"
    # the same steps as flat arrays (D4RL's layout) make the same store
    flat = {"observations": np.concatenate([e.observations[:-1] for e in episodes]),
            "next_observations": np.concatenate([e.observations[1:] for e in episodes]),
            "actions": np.concatenate([e.actions for e in episodes]),
            "rewards": np.concatenate([e.rewards for e in episodes]),
            "terminals": np.zeros(15, bool), "timeouts": np.tile([0, 0, 0, 0, 1], 3)}
    sq.build_store(tmp_path / "f", sq.episodes_from_arrays(**flat), suite="tiles", game="tiles")
    a, b = (sq.open_dataset(tmp_path / d).game("tiles") for d in ("d", "f"))
    assert a.manifest["counts"] == b.manifest["counts"]
    assert a.manifest["episode_returns"] == b.manifest["episode_returns"]
    bad = dict(flat, timeouts=np.zeros(15, bool))  # the episode ends are lost
    with pytest.raises(UserError, match=r"step 4: next_observations\[4\] is not observations\[5\]"):
        list(sq.episodes_from_arrays(**bad))
    ep = episodes[0]
    cases = [
        (dict(ep.__dict__, actions=ep.actions + 5), "action 6 out of range"),
        (dict(ep.__dict__, observations=ep.observations.astype(np.float32)), "dtype float32"),
        (dict(ep.__dict__, observations=ep.observations[:, ::-1]), "stacked observations do "
         "not overlap"),
        ({"observations": ep.observations}, "missing actions, rewards, terminated"),
        (dict(ep.__dict__, reward=1), "unknown keys reward"),
    ]
    for item, message in cases:
        with pytest.raises(UserError, match=message):
            sq.build_store(tmp_path / "bad", [episodes[1], item], suite="tiles", game="tiles")
        assert not (tmp_path / "bad" / "tiles").exists()  # nothing published
    with pytest.raises(UserError, match="already holds a dataset"):
        sq.build_store(tmp_path / "d", episodes, suite="tiles", game="tiles")
    with pytest.raises(UserError, match="one tiles game at a time"):
        sq.build_store(tmp_path / "x", episodes, suite="tiles", game="all")
    # single frames are accepted as well as the suite's stacks
    single = [sq.Episode(e.observations[:, -1:], e.actions, e.rewards, e.terminated,
                         e.truncated) for e in episodes]
    sq.build_store(tmp_path / "s", single, suite="tiles", game="tiles")
    assert sq.open_dataset(tmp_path / "s").game("tiles").manifest["counts"] == \
        a.manifest["counts"]


def test_a_suite_without_scores_reports_raw_returns(registries, tmp_path):
    suite = register_suite(GymSuite("tiles", {"tiles": _Tiles}, stack=1, max_episode_steps=3))
    sq.build_store(tmp_path / "d", _play(suite, "tiles", 4), suite="tiles", game="tiles")
    agent = sq.make("scaled-ql", games="tiles", suite="tiles", encoder="nature", width=0.25,
                    feature_dim=8, batch_size=4, eval_episodes=2, n_step=1)
    summary = agent.fit(tmp_path / "d", steps=3, out=tmp_path / "run", progress=False)
    assert summary["evaluation"]["tiles/return"] is not None
    assert "tiles/normalized" not in summary["evaluation"] and "iqm" not in summary["evaluation"]
    # frames too small for the network: one line at make, not a traceback mid-run
    register_suite(GymSuite("tiny", {"t": _Tiles}, stack=1, frame_size=(5, 6)))
    with pytest.raises(UserError, match="NatureCNN encoder cannot read 5x6 frames"):
        sq.make("scaled-ql", games="t", suite="tiny", encoder="nature", width=0.25)


def test_a_plugin_learner_runs_the_conformance_test(tmp_path):
    """docs/extending.md, "Checking a learner": the registry's conformance test picks up a
    learner and a value target from SCALEDQL_PLUGINS (the quick checks here; the module runs
    them all)."""
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(named_block("# my_plugin.py"))
    conformance = Path(__file__).with_name("test_conformance.py")
    out = run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(conformance),
               "-k", "(warmup-ql or hl-laplace) and (loss_falls or state_round_trip or "
               "export_round_trip)"], tmp_path, SCALEDQL_PLUGINS=str(plugin))
    assert "6 passed" in out and "test_loss_falls_on_a_fixed_batch[scaled-ql:hl-laplace]" in out, \
        out[-2000:]
