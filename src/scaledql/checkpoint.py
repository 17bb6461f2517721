"""Checkpoints: one file holding everything a run needs to resume, evaluate or report.

``RUN/checkpoint.pt`` (the latest) is a ``torch.save`` dict:
``{"format": "scaledql-checkpoint", "version": 1, "step", "suite", "games", "num_actions",
"obs_shape", "agent_config", "agent" (online/target nets, optimizer), "train_config",
"sampler" (RNG state), "rng" (torch/numpy/python RNG states), "env_options"}``.
Writes are atomic (temp file, fsync, rename) so a crash never leaves a half-written checkpoint.
Loading uses ``weights_only=True``: a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.suites import EnvOptions, get_suite

FORMAT = "scaledql-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"


def checkpoint_path(path: Path) -> Path:
    """A run folder or a checkpoint file → the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    return path


def save_checkpoint(payload: dict, path: Path) -> None:
    """Atomically write ``payload`` (format/version added) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read and validate a checkpoint; ``UserError`` for anything that is not one."""
    file = checkpoint_path(path)
    if not file.exists():
        raise UserError(f"checkpoint {file} does not exist")
    try:
        payload = torch.load(file, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{file} is not a scaledql checkpoint ({first[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{file} is not a scaledql checkpoint (no scaledql format marker)")
    if payload.get("version") != VERSION:
        raise UserError(f"{file}: checkpoint version {payload.get('version')} is not supported "
                        f"(this scaledql reads version {VERSION})")
    return payload


class QPolicy:
    """Greedy policy of a trained multi-game Q-network (one head per trained game)."""

    def __init__(self, agent, suite: str, games: list[str], env_options: EnvOptions):
        self.agent = agent
        self.suite = suite
        self.games = games
        self.env_options = env_options
        self.head = {g: i for i, g in enumerate(games)}
        self._rng = np.random.default_rng(0)  # unused at ε = 0; act() wants one

    def greedy_actions(self, obs: np.ndarray, game: str) -> np.ndarray:
        return self.agent.act(obs, self.head[game], 0.0, self._rng)

    def check_games(self, games: list[str], options: EnvOptions) -> None:
        """Every game must have a trained head with a matching action count."""
        suite = get_suite(self.suite)
        for game in games:
            if game not in self.head:
                raise UserError(f"checkpoint has no head for {game!r} (trained on: "
                                f"{', '.join(self.games)})")
            want = self.agent.num_actions[self.head[game]]
            got = suite.spec(game, options).num_actions
            if want != got:
                raise UserError(f"{game}: checkpoint head has {want} actions, the game as "
                                f"configured has {got} (check --full-action-space)")


def load_policy(path: Path, device: str | None = None) -> tuple[QPolicy, str, list[str]]:
    """Checkpoint → (greedy policy, suite name, trained games)."""
    from scaledql.agents.scaled_ql import build_agent_from_checkpoint

    dev = pick_device(device)
    payload = load_checkpoint(path, dev)
    agent = build_agent_from_checkpoint(payload, dev)
    options = EnvOptions(**payload.get("env_options", {}))
    return QPolicy(agent, payload["suite"], list(payload["games"]), options), payload["suite"], \
        list(payload["games"])
