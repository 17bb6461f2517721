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
    from scaledql.data.store import GameWriter

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
