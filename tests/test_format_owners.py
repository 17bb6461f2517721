"""Each format read through its owner (issue 36): a store's provenance and game options through
``GameData``, its discovery through ``data.store``, ``Problem.of`` the one constructor,
``EnvOptions.validate`` for the CLI and the API alike, a study's lifecycle in ``experiments``."""

from __future__ import annotations

import pytest

from scaledql.agents.base import Problem
from scaledql.data.store.dataset import game_directories, open_dataset
from scaledql.errors import UserError
from scaledql.suites import EnvOptions

EPISODES = [(3, True, False), (2, False, True)]


def test_provenance_and_game_options_come_from_the_game_store(tmp_path, write_game):
    recorded = {"sticky": 0.0, "max_episode_steps": 50, "full_action_space": False,
                "mode": None, "difficulty": None, "not_an_option": 1}
    write_game(tmp_path, "breakout", EPISODES,
               provenance={"source": "test", "seed": 7, "env_options": recorded})
    write_game(tmp_path, "asterix", EPISODES, provenance={"source": "test"})
    dataset = open_dataset(tmp_path)
    g, bare = dataset.game("breakout"), dataset.game("asterix")
    assert g.provenance["source"] == "test" and g.provenance["seed"] == 7
    assert g.env_options_record == recorded  # as recorded, for merges and exports
    assert g.env_options == {k: v for k, v in recorded.items() if k != "not_an_option"}
    assert EnvOptions(**g.env_options) == EnvOptions(sticky=0.0, max_episode_steps=50)
    assert bare.env_options_record is None and bare.env_options == {}


def test_game_directories_is_the_discovery_open_dataset_and_verify_share(tmp_path, write_game):
    write_game(tmp_path, "breakout", EPISODES)
    write_game(tmp_path, "asterix", EPISODES)
    assert game_directories(tmp_path) == [tmp_path / "asterix", tmp_path / "breakout"]
    assert game_directories(tmp_path, ["breakout"]) == [tmp_path / "breakout"]
    assert game_directories(tmp_path / "breakout") == [tmp_path / "breakout"]
    with pytest.raises(UserError, match="no complete game store for pong"):
        game_directories(tmp_path, ["pong"])
    with pytest.raises(UserError, match="does not exist"):
        game_directories(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no game stores"):
        game_directories(tmp_path / "empty")


def test_problem_of_checks_observation_shapes_wherever_it_is_built(tmp_path, write_game):
    from scaledql.api.functions import problem_of
    from scaledql.checkpoint import problem_of as checkpoint_problem

    write_game(tmp_path, "breakout", EPISODES, frame_shape=(1, 2, 2))
    write_game(tmp_path, "asterix", EPISODES, frame_shape=(1, 3, 3))
    dataset = open_dataset(tmp_path)
    with pytest.raises(UserError, match="observation shapes differ"):
        problem_of(dataset)  # it used to skip this check
    problem = problem_of(dataset, ["breakout"])
    assert problem == Problem(obs_shape=(2, 2, 2), num_actions=(3,), games=("breakout",),
                              frame_channels=1)
    payload = {"suite": "minatar", "games": ["breakout", "asterix"], "num_actions": [3, 5],
               "obs_shape": [4, 10, 10], "frame_channels": 2}
    assert checkpoint_problem(payload) == Problem((4, 10, 10), (3, 5), ("breakout", "asterix"),
                                                  frame_channels=2)


@pytest.mark.parametrize("options, message", [
    (EnvOptions(sticky=1.5), "--sticky must be in [0, 1], got 1.5"),
    (EnvOptions(max_episode_steps=0), "--max-episode-steps must be positive, got 0"),
])
def test_env_options_are_checked_alike_by_the_api_and_the_cli(options, message, capsys):
    from scaledql.cli import main
    from scaledql.evaluate import EvalConfig

    with pytest.raises(UserError) as raised:
        options.validate()
    assert str(raised.value) == message
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        EvalConfig(options=options)  # what evaluate_policy and train_run build
    flag = "--sticky" if options.sticky is not None else "--max-episode-steps"
    value = options.sticky if options.sticky is not None else options.max_episode_steps
    assert main(["evaluate", "--policy", "random", "--games", "breakout", flag, str(value),
                 "--episodes", "1"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert EnvOptions(sticky=0.25, max_episode_steps=10).validate() == \
        EnvOptions(sticky=0.25, max_episode_steps=10)


def test_a_study_lists_its_jobs_states_from_experiments(tmp_path):
    from scaledql.experiments.lifecycle import job_states
    from scaledql.experiments.study import load_study

    study = load_study("claims", "smoke", tmp_path / "runs")
    states = job_states(study, tmp_path / "results")
    assert [job.id for _, job in states] == [job.id for job in study.jobs]
    assert {state for state, _ in states} == {"to do"}
