"""Checkpoints: the file format, one payload builder, and loading any learner back.

``RUN/checkpoint.pt`` (the latest) is a ``torch.save`` dict:
``{"format": "scaledql-checkpoint", "version": 2, "algo", "step", "suite", "games",
"num_actions", "obs_shape", "frame_channels", "env_options", "learner_config", "learner"
(the learner's state_dict), "run_config", "prefetch" (per-process sampler states), "rng"
(torch/numpy/python RNG states), "param_counts"}``. Collection runs save the same layout for
their online learners (without run/prefetch state). Version-1 files (Scaled QL only) are read
and converted. Writes are atomic (temp file, fsync, rename): a crash never leaves a half-written
checkpoint, and temp files of killed writers are removed by the next write. Loading uses
``weights_only=True``: a checkpoint from elsewhere cannot run code.

History (``train --keep-every K``): ``RUN/checkpoints/step_N.pt`` are permanent copies of the
latest checkpoint at every K-th step, the same format, loadable wherever a run is.
"""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from scaledql.agents.base import Learner, Problem
from scaledql.agents.registry import learner_class
from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.io import atomic_output, remove_stale_temporaries
from scaledql.policies import Policy
from scaledql.suites import EnvOptions, get_suite
from scaledql.typed import typed

FORMAT = "scaledql-checkpoint"
VERSION = 2
FILENAME = "checkpoint.pt"
HISTORY_DIR = "checkpoints"  # RUN/checkpoints/step_N.pt (train --keep-every)


def checkpoint_path(path: Path) -> Path:
    """A run folder or a checkpoint file → the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    return path


def save_checkpoint(payload: dict, path: Path) -> None:
    """Atomically write ``payload`` (format/version added) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def history_path(run: Path, step: int) -> Path:
    """Where ``--keep-every`` keeps the checkpoint of ``step``."""
    return Path(run) / HISTORY_DIR / f"step_{step:08d}.pt"


def keep_copy(ckpt_file: Path, step: int) -> Path:
    """Keep a permanent copy of ``ckpt_file`` (the run's latest, at ``step``), written
    atomically. A copy already there is of the same step (a resumed run passing it again):
    it is kept as it is."""
    dest = history_path(ckpt_file.parent, step)
    if not dest.exists():
        with atomic_output(dest, fsync=True) as tmp:
            shutil.copyfile(ckpt_file, tmp)
    return dest


def learner_payload(learner: Learner, suite: str, env_options: dict[str, Any]) -> dict[str, Any]:
    """What every checkpoint holds to rebuild ``learner`` and play its games."""
    p = learner.problem
    return {"algo": learner.name, "step": learner.step, "suite": suite, "games": list(p.games),
            "num_actions": list(p.num_actions), "obs_shape": list(p.obs_shape),
            "frame_channels": p.frame_channels, "env_options": dict(env_options),
            "learner_config": learner.cfg.to_dict(), "learner": learner.state_dict(),
            "param_counts": learner.param_counts()}


def _upgrade_v1(payload: dict) -> dict:
    """Version 1 (a Scaled QL ``agent`` without a torso module) → version 2."""
    def torso_keys(state: dict) -> dict:
        return {(f"torso.{k}" if k.startswith(("encoder.", "projection.")) else k): v
                for k, v in state.items()}

    cfg = dict(payload["agent_config"])
    for key in ("n_step", "reward_clip"):
        if key in (payload.get("train_config") or {}):
            cfg[key] = payload["train_config"][key]
    agent = dict(payload["agent"])
    agent["online"], agent["target"] = torso_keys(agent["online"]), torso_keys(agent["target"])
    suite = get_suite(payload["suite"])
    channels = suite.spec(payload["games"][0], EnvOptions(**payload.get("env_options", {}))).frame_shape[0]
    return {**payload, "version": VERSION, "algo": "scaled-ql", "learner_config": cfg,
            "learner": agent, "frame_channels": channels}


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read and validate a checkpoint; ``UserError`` for anything that is not one."""
    file = checkpoint_path(path)
    if not file.exists():
        raise UserError(f"checkpoint {file} does not exist")
    try:
        payload = torch.load(file, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # torch's message is pages of advice; ours is one line
        raise UserError(f"{file} is not a scaledql checkpoint (not a weights-only torch file: "
                        "it holds objects other than tensors and plain data, or is damaged)") \
            from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{file} is not a scaledql checkpoint ({first[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{file} is not a scaledql checkpoint (no scaledql format marker)")
    try:
        if payload.get("version") == 1:
            payload = _upgrade_v1(payload)
    except (KeyError, TypeError, ValueError, IndexError, UserError) as exc:
        raise UserError(f"{file}: damaged version-1 checkpoint ({exc})") from None
    if payload.get("version") != VERSION:
        raise UserError(f"{file}: checkpoint version {payload.get('version')} is not supported "
                        f"(this scaledql reads versions 1 and {VERSION})")
    check_payload(payload, file)
    return payload


def _ints(value: Any, n: int | None = None) -> bool:
    return (isinstance(value, list | tuple) and (n is None or len(value) == n)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))


def _non_finite(obj: Any, name: str = "") -> str | None:
    """The name of the first floating tensor in ``obj`` holding NaN or infinity, or None."""
    if isinstance(obj, torch.Tensor):
        return name if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = _non_finite(value, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def check_payload(payload: dict, file: Path) -> None:
    """The fields every reader of a checkpoint relies on, with their types; finite weights."""
    from scaledql.data.validate import check_game_name

    kinds = {"algo": str, "suite": str, "games": list, "num_actions": list, "obs_shape": list,
             "frame_channels": int, "learner_config": dict, "learner": dict}
    for key, kind in kinds.items():
        if key not in payload:
            raise UserError(f"{file}: checkpoint lacks {key}")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise UserError(f"{file}: checkpoint {key} must be a {kind.__name__}, got "
                            f"{type(payload[key]).__name__}")
    games = payload["games"]
    if not games or len(set(map(str, games))) != len(games):
        raise UserError(f"{file}: checkpoint games must be distinct game names, got {games!r}")
    for game in games:
        check_game_name(payload["suite"], game, f"{file}: checkpoint")
    if not _ints(payload["num_actions"], len(games)):
        raise UserError(f"{file}: checkpoint num_actions must be one positive integer per game")
    if not _ints(payload["obs_shape"], 3) or payload["frame_channels"] < 1:
        raise UserError(f"{file}: checkpoint obs_shape / frame_channels are not an observation "
                        "shape")
    bad = _non_finite(payload["learner"])
    if bad is not None:
        raise UserError(f"{file}: checkpoint holds non-finite weights ({bad}): NaN or infinity")
    # What a resume restores, where present (an offline run has all four; online fine-tuning
    # saves its replay state instead of samplers; a collection checkpoint none).
    for key, kind in (("run_config", dict), ("prefetch", list), ("rng", dict), ("step", int)):
        if key in payload and not isinstance(payload[key], kind):
            raise UserError(f"{file}: checkpoint {key} is not a valid {kind.__name__}")


def problem_of(payload: dict) -> Problem:
    return Problem(obs_shape=tuple(int(s) for s in payload["obs_shape"]),
                   num_actions=tuple(int(a) for a in payload["num_actions"]),
                   games=tuple(payload["games"]), frame_channels=int(payload["frame_channels"]))


def build_learner(payload: dict, device: torch.device | str) -> Learner:
    """The learner a checkpoint payload describes, with its weights loaded."""
    file = "checkpoint"
    try:
        cls = learner_class(payload["algo"])
        cfg = cls.config_class(**typed(cls.config_class, payload["learner_config"],
                                       f"{file} learner_config"))
        learner = cls(cfg, problem_of(payload), device)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{file} does not describe a learner ({exc})") from None
    load_learner_state(learner, payload["learner"], file)
    return learner


def load_learner_state(learner: Learner, state: dict, file: Path | str = "checkpoint") -> None:
    """``learner.load_state_dict(state)``; weights that do not fit are one ``UserError``."""
    try:
        learner.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        text = " ".join(str(exc).split())[:240] or type(exc).__name__
        raise UserError(f"{file} weights do not fit its learner config ({text})") from None


def load_learner(path: Path, device: str | torch.device | None = None) -> tuple[Learner, dict]:
    """Checkpoint (file or run folder) → (learner on ``device``, payload)."""
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    payload = load_checkpoint(path, dev)
    return build_learner(payload, dev), payload


def check_policy_games(payload: dict, games: list[str], options: EnvOptions) -> None:
    """Every game must have a trained head with a matching action count."""
    suite = get_suite(payload["suite"])
    trained = list(payload["games"])
    for game in games:
        if game not in trained:
            raise UserError(f"checkpoint has no head for {game!r} (trained on: "
                            f"{', '.join(trained)})")
        want = int(payload["num_actions"][trained.index(game)])
        got = suite.spec(game, options).num_actions
        if want != got:
            raise UserError(f"{game}: checkpoint head has {want} actions, the game as "
                            f"configured has {got} (check --full-action-space)")


def load_policy(path: Path, device: str | None = None) -> tuple[Policy, dict]:
    """Checkpoint → (its learner's evaluation policy, payload)."""
    learner, payload = load_learner(path, device)
    return learner.policy(), payload
