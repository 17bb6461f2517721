"""The registry's static table (what --help and config files read without torch) against the
learner classes themselves."""

from __future__ import annotations

import pytest

from scaledql.agents.base import Learner
from scaledql.agents.registry import (
    LEARNERS,
    learner_class,
    learner_config_class,
    learner_names,
    learner_summary,
    register,
)
from scaledql.errors import UserError


@pytest.mark.parametrize("name", list(LEARNERS))
def test_table_row_matches_the_class(name):
    cls = learner_class(name)
    row = LEARNERS[name]
    assert cls.name == name
    assert cls.__module__ == f"scaledql.agents.{row.module}"
    assert cls.config_class is learner_config_class(name)
    assert cls.config_class.__name__ == row.config
    assert cls.summary == learner_summary(name) == row.summary and row.summary


def test_names_and_unknown_learner():
    assert learner_names() == list(LEARNERS)
    assert learner_names()[0] == "scaled-ql"  # the default --algo
    with pytest.raises(UserError, match="unknown learner 'nope'"):
        learner_config_class("nope")


def test_register_refuses_a_class_that_contradicts_its_row():
    from scaledql.agents.configs import BCConfig

    class Stray(Learner):  # type: ignore[misc]  # abstract: never instantiated
        name = "no-such-row"
        config_class = BCConfig

    Stray.__module__ = "scaledql.agents.stray"  # in the package: a row is needed
    with pytest.raises(ValueError, match="no row"):
        register(Stray)
    Stray.name = "scaled-ql"
    with pytest.raises(ValueError, match="is defined in"):
        register(Stray)
    Stray.__module__ = "scaledql.agents.scaled_ql"
    with pytest.raises(ValueError, match=r"config_class is not configs\.ScaledQLConfig"):
        register(Stray)
    Stray.__module__ = "user_code"  # a plugin (tests/test_extending.py) takes no built-in name
    with pytest.raises(ValueError, match="'scaled-ql' is a built-in learner"):
        register(Stray)
    assert learner_class("scaled-ql") is not Stray
