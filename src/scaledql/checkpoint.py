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

Exported agents (``scaledql export``, written by ``scaledql.export``) load here too, so every
command that takes a run takes one: a folder with ``model.safetensors`` (the learner's networks,
``Learner.modules()``, as ``NETWORK.PARAM`` tensors) and ``config.json`` (what a checkpoint says
besides its weights, and the learner state's scalars such as its step). Their payload carries
``weights_only``: ``build_learner`` builds the learner fresh, loads the networks, copies them
into a target network where the learner has one, and sets the scalars; the optimizer starts
fresh (nothing that an exported agent is for — playing, evaluating, transfer — reads it).
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scaledql.agents.base import Learner, Problem
from scaledql.agents.registry import learner_class
from scaledql.atomic_files import atomic_output
from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.policies import Policy
from scaledql.run_folder import checkpoint_file, history_file
from scaledql.suites import EnvOptions, get_suite
from scaledql.typed_fields import typed

FORMAT = "scaledql-checkpoint"
VERSION = 2
EXPORT_FORMAT = "scaledql-export"
EXPORT_VERSION = 1
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"


def checkpoint_path(path: Path) -> Path:
    """A run folder, an exported folder or a checkpoint file → the file to read (for an
    exported folder its ``model.safetensors``; a run folder's ``checkpoint.pt`` wins)."""
    path = Path(path)
    if path.is_dir():
        exported = path / EXPORT_WEIGHTS
        path = exported if exported.exists() and not checkpoint_file(path).exists() \
            else checkpoint_file(path)
    return path


def save_checkpoint(payload: dict, path: Path) -> None:
    """Atomically write ``payload`` (format/version added) to ``path``."""
    # A file object, not the path: torch names the archive's records after a path's file name
    with atomic_output(path, fsync=True) as tmp, open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)


def keep_copy(ckpt_file: Path, step: int) -> Path:
    """Keep a permanent copy of ``ckpt_file`` (the run's latest, at ``step``), written
    atomically. A copy already there is of the same step (a resumed run passing it again):
    it is kept as it is."""
    dest = history_file(ckpt_file.parent, step)
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


# What a run adds to ``learner_payload``, each written where its run writes it: an offline
# run's ``run_config``, ``prefetch`` (per-process sampler states), ``rng`` (global RNG states)
# and ``data_identity``; an online run's ``run_config``, ``online`` (its loop's counters, ε
# generator and replay) and ``rng``; a collected game's ``seed`` (and a snapshot's
# ``env_steps``, ``episode_returns``).
RUN_STATE_KEYS = ("run_config", "prefetch", "rng", "data_identity", "online", "seed",
                  "env_steps", "episode_returns")
# What a checkpoint needs for a training run (``scaledql train --resume``, ``Agent.fit``) to
# continue from it.
RESUME_KEYS = ("run_config", "prefetch", "rng")


def run_payload(learner: Learner, suite: str, env_options: dict[str, Any],
                **state: Any) -> dict[str, Any]:
    """A run's checkpoint payload: ``learner_payload`` and the run's ``state`` (keys of
    ``RUN_STATE_KEYS``, kept in the order given)."""
    unknown = [k for k in state if k not in RUN_STATE_KEYS]
    if unknown:
        raise ValueError(f"not a checkpoint's run state: {', '.join(unknown)}")
    return {**learner_payload(learner, suite, env_options), **state}


def missing_resume_state(payload: dict[str, Any]) -> str | None:
    """The first of ``RESUME_KEYS`` the payload lacks (None: a training run can continue it)."""
    return next((k for k in RESUME_KEYS if k not in payload), None)


def resumable(payload: dict[str, Any]) -> bool:
    """Can a training run continue from this checkpoint?"""
    return missing_resume_state(payload) is None


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
    if file.name == EXPORT_WEIGHTS:
        return read_export(file.parent, device)
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
    from scaledql.data.store.validate import check_game_name

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


@dataclass(frozen=True)
class _RecordedGame:
    """One game of a checkpoint as its payload records it (a ``GameLike`` for ``Problem.of``)."""

    suite: str
    name: str
    num_actions: int
    frame_shape: tuple[int, int, int]
    obs_shape: tuple[int, int, int]


def problem_of(payload: dict, where: str = "checkpoint") -> Problem:
    """The problem the payload's learner was built for (``check_payload`` has checked it)."""
    obs_shape = tuple(int(s) for s in payload["obs_shape"])
    frame_shape = (int(payload["frame_channels"]), *obs_shape[1:])
    return Problem.of([_RecordedGame(str(payload["suite"]), game, int(actions), frame_shape,
                                     obs_shape)  # type: ignore[arg-type]
                       for game, actions in zip(payload["games"], payload["num_actions"],
                                                strict=True)], where=where)


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
    if payload.get("weights_only"):
        load_network_weights(learner, payload["learner"], payload.get("learner_state", {}),
                             "exported agent")
    else:
        load_learner_state(learner, payload["learner"], file)
    return learner


def load_learner_state(learner: Learner, state: dict, file: Path | str = "checkpoint") -> None:
    """``learner.load_state_dict(state)``; weights that do not fit are one ``UserError``."""
    try:
        learner.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        text = " ".join(str(exc).split())[:240] or type(exc).__name__
        raise UserError(f"{file} weights do not fit its learner config ({text})") from None


# -- exported agents (the format; ``scaledql.export`` writes it) ------------------------------
# What an exported config.json says that a checkpoint says too (besides weights and state).
EXPORT_FIELDS = ("algo", "step", "suite", "games", "num_actions", "obs_shape", "frame_channels",
                 "env_options", "learner_config", "param_counts", "run_config", "data_identity")


def network_weights(learner: Learner) -> dict[str, torch.Tensor]:
    """The learner's networks as flat ``NETWORK.PARAM`` tensors on the CPU, each with its own
    memory (safetensors refuses tensors that share storage)."""
    return {f"{name}.{key}": value.detach().to("cpu").contiguous().clone()
            for name, module in learner.modules().items()
            for key, value in module.state_dict().items()}


def state_scalars(learner: Learner) -> dict[str, Any]:
    """The top-level scalars of the learner's state (its step; MAE's mask seed)."""
    return {k: v for k, v in learner.state_dict().items() if isinstance(v, bool | int | float | str)}


def read_export(folder: Path, device: torch.device | str = "cpu") -> dict:
    """An exported folder → a checkpoint payload with ``weights_only`` (``UserError`` if it is
    not one). Nothing in it can run code: JSON and safetensors only."""
    config_file, file = folder / EXPORT_CONFIG, folder / EXPORT_WEIGHTS
    if not config_file.is_file():
        raise UserError(f"{folder}: an exported agent needs {EXPORT_CONFIG} beside "
                        f"{EXPORT_WEIGHTS}")
    try:
        config = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{config_file}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise UserError(f"{config_file} is not an exported scaledql agent (no {EXPORT_FORMAT} "
                        "format marker)")
    if config.get("export_version") != EXPORT_VERSION:
        raise UserError(f"{config_file}: export version {config.get('export_version')!r} is not "
                        f"supported (this scaledql reads version {EXPORT_VERSION})")
    scalars = config.get("state", {})
    if not isinstance(scalars, dict) or \
            not all(isinstance(v, bool | int | float | str) for v in scalars.values()):
        raise UserError(f"{config_file}: state must be a table of numbers and strings")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(file, device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{file} is not a safetensors file ({first[:120]})") from None
    payload = {k: config[k] for k in EXPORT_FIELDS if k in config}
    payload.update(format=FORMAT, version=VERSION, learner=weights, learner_state=scalars,
                   weights_only=True)
    check_payload(payload, file)
    return payload


def load_network_weights(learner: Learner, weights: dict[str, torch.Tensor],
                         scalars: dict[str, Any], file: Path | str) -> None:
    """Load ``network_weights``/``state_scalars`` output into a freshly built learner."""
    modules = learner.modules()
    groups: dict[str, dict[str, torch.Tensor]] = {name: {} for name in modules}
    for key, value in weights.items():
        name, _, param = key.partition(".")
        if name not in groups:
            raise UserError(f"{file}: {key} belongs to no network of a {learner.name} learner "
                            f"(networks: {', '.join(modules)})")
        groups[name][param] = value
    try:
        for name, module in modules.items():
            module.load_state_dict(groups[name])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        text = " ".join(str(exc).split())[:240] or type(exc).__name__
        raise UserError(f"{file} weights do not fit its learner config ({text})") from None
    if hasattr(learner, "sync_target"):  # a target network starts as a copy of the online one
        learner.sync_target()
    state = learner.state_dict()
    for key, value in scalars.items():
        if key not in state or type(state[key]) is not type(value):
            raise UserError(f"{file}: state {key}={value!r} is not a {learner.name} learner's")
        state[key] = value
    load_learner_state(learner, state, file)


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
