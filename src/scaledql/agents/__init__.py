"""Learners: each one module behind one interface (``base.Learner``), found by name in the
registry. ``learner_class("scaled-ql")`` → the class; ``learner_names()`` → every registered one."""

from scaledql.agents.base import BatchSpec, Learner, LearnerConfig, Problem
from scaledql.agents.registry import learner_class, learner_names, register

__all__ = ["BatchSpec", "Learner", "LearnerConfig", "Problem", "learner_class", "learner_names",
           "register"]
