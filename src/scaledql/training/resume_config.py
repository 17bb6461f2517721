"""A resumed run's configuration: the saved run's config (``RUN/config.json``) as the base
layer, then a ``--config`` file, then the flags (``training.config.merge``), with the run's
data found again from wherever the command runs. The CLI (``scaledql train --resume``) and
any other caller continue a run through ``resume_config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaledql.agents.registry import learner_config_class
from scaledql.errors import UserError
from scaledql.run_folder import config_file, is_run, read_config
from scaledql.training.config import RunConfig, merge, preset_path, read_toml
from scaledql.typed_fields import typed


def typed_overrides(algo: str, run: dict[str, Any], learner: dict[str, Any],
                    where: str = "--set/flags") -> tuple[dict, dict]:
    """Override values (``--set`` values are TOML) checked against the options' types as the
    config layers are checked (``steps=5.5`` is an error, ``lr=1`` becomes 1.0)."""
    run = {**run, **typed(RunConfig, run, where, skip=("learner",))}
    learner = {**learner, **typed(learner_config_class(algo), learner,
                                  f"{where} learner ({algo})")}
    return run, learner


def resumed_data(data: Path, run: Path) -> Path:
    """A resumed run's data from any directory: the saved path as it is when it exists (absolute,
    or relative to here), else relative to the folder the run was started from — the nearest
    folder above the run that holds it (``runs/studies/S/job/seed_0`` → the clone with
    ``data/``). The run's data fingerprint still checks that it is the same data."""
    if data.is_absolute() or data.exists():
        return data
    for folder in Path(run).resolve().parents:
        if (folder / data).exists():
            return folder / data
    return data


def resume_config(out: Path, run: dict[str, Any], learner: dict[str, Any], *,
                  algo: str | None = None, config: str | None = None,
                  data: Path | None = None) -> RunConfig:
    """The merged, validated config that continues the run in ``out``: its saved config, then
    ``config`` (a TOML file or preset name), then ``run`` / ``learner`` overrides (untyped, as
    given). ``algo``: the learner (default: the run's); ``data``: the store (default: the
    run's, found again by ``resumed_data``)."""
    saved_file = config_file(out)
    if not is_run(out):
        raise UserError(f"--resume: {out} holds no run (no {saved_file.name})")
    saved = read_config(out)
    algo = algo or saved.get("algo", "scaled-ql")
    if not isinstance(algo, str):
        raise UserError(f"{saved_file}: algo must be a learner name, got {algo!r}")
    run, learner = typed_overrides(algo, run, learner)
    user = read_toml(preset_path(config)) if config else None
    run.update(out=str(out))
    if data is not None:
        run["data"] = str(data)
    elif isinstance(saved.get("data"), str):
        run["data"] = str(resumed_data(Path(saved["data"]), Path(out)))
    saved_learner = saved.pop("learner", {})
    if not isinstance(saved_learner, dict):
        raise UserError(f"{saved_file}: learner must be a table of learner options")
    return merge(algo, {**saved, "learner": {algo: saved_learner}}, user, run, learner,
                 preset_name=str(saved_file), user_name=str(config))
