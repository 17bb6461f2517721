"""Shared pytest fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spinning threads

from pathlib import Path

import numpy as np
import pytest


def labelled_frames(first_label: int, count: int, frame_shape=(1, 2, 2)) -> np.ndarray:
    """uint8[count, C, H, W] frames whose every pixel equals its label (first_label, +1, ...)."""
    labels = (np.arange(count) + first_label).astype(np.uint8)
    return np.broadcast_to(labels[:, None, None, None], (count, *frame_shape)).copy()


@pytest.fixture
def frames_labelled():
    """The ``labelled_frames`` helper, for tests that build episodes by hand."""
    return labelled_frames


@pytest.fixture
def write_game():
    """write_game(root, game, episodes, **writer_kwargs) -> Path: a store from (T, terminated,
    truncated) triples; frames are labelled 1, 2, ... in write order, actions t % A, rewards t+1."""
    from scaledql.data.store.writer import GameWriter

    def write(root: Path, game: str, episodes, *, frame_shape=(1, 2, 2), stack=2,
              num_actions=3, **kwargs) -> Path:
        label = 1
        with GameWriter(root, suite="minatar", game=game, num_actions=num_actions,
                        frame_shape=frame_shape, stack=stack, **kwargs) as w:
            for t, terminated, truncated in episodes:
                w.add_episode(labelled_frames(label, t + 1, frame_shape),
                              np.arange(t) % num_actions, np.arange(1, t + 1, dtype=np.float32),
                              terminated, truncated)
                label += t + 1
        return root / game

    return write


def write_eval_run(run: Path, returns: dict[str, list[float]] | None = None, *,
                   evals: dict[int, dict[str, list[float]]] | None = None, algo: str = "scaled-ql",
                   seed: int = 0, suite: str = "minatar", steps: int = 100,
                   learner: dict | None = None, **config) -> Path:
    """A run folder as far as reports read it, in the formats ``scaledql train`` writes:
    ``config.json`` and ``eval/step_N.json`` (``evals``: step → raw returns per game; or
    ``returns`` evaluated at the final step)."""
    import json

    from scaledql.evaluate import EvalReport

    run = Path(run)
    (run / "eval").mkdir(parents=True, exist_ok=True)
    cfg = {"data": str(run.parent / "data"), "out": str(run), "algo": algo, "games": None,
           "steps": steps, "seed": seed, "eval_episodes": 3,
           "learner": {"encoder": "nature", "width": 0.25, **(learner or {})}, **config}
    (run / "config.json").write_text(json.dumps(cfg))
    for step, rets in (evals or {steps: returns or {}}).items():
        # the aggregate is left out: reports recompute everything from the returns
        report = {"suite": suite, "seed": seed, "epsilon": 0.001, "aggregate": {},
                  "games": EvalReport(suite, rets, seed, 0.001).per_game()}
        (run / "eval" / f"step_{step:08d}.json").write_text(json.dumps(report))
    return run


# The smallest Scaled QL network and batch for `scaledql train` in tests.
TINY_NET = ["--encoder", "nature", "--width", "0.25", "--feature-dim", "16", "--batch-size", "8"]


def write_tiny_minatar_store(root: Path) -> Path:
    """Two MinAtar games (breakout, asterix), four short random episodes each, 30-step cap."""
    from scaledql.data.store.writer import GameWriter

    rng = np.random.default_rng(0)
    for game, actions in (("breakout", 3), ("asterix", 5)):
        with GameWriter(root, suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1,
                        provenance={"source": "test", "env_options": {"max_episode_steps": 30}}) as w:
            for length in (7, 12, 5, 9):
                w.add_episode(255 * rng.integers(0, 2, (length + 1, 10, 10, 10), dtype=np.uint8),
                              rng.integers(0, actions, length),
                              rng.integers(0, 2, length).astype(np.float32),
                              terminated=True, truncated=False)
    return root


def pytest_collection_modifyitems(config, items):
    """Tests marked ``heavy`` (whole studies, the demo: minutes each) run first, so that with
    ``./run test``'s parallel workers none of them starts last and leaves one worker busy alone."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
