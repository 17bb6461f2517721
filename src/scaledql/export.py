"""``scaledql export``: a trained agent as a folder to share.

``DIR/model.safetensors`` holds the learner's networks (``Learner.modules()``, tensors named
``NETWORK.PARAM``; no optimizer state, no target network — it is a copy of the online one for
acting), ``DIR/config.json`` everything else a checkpoint says (learner, its config, games,
action counts, observation shape, game options, the run's full configuration, the state's
scalars such as its step) plus where the data came from and the run's evaluation, and
``DIR/README.md`` the model card written from it (``scaledql.modelcard``). Reading the folder
back is ``checkpoint.load_checkpoint``'s job, so every command that takes a run takes an export.

The folder is written beside ``DIR`` under a temporary name and renamed into place: a reader
never sees half an export. An earlier export at ``DIR`` is replaced; anything else there is
refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from scaledql.atomic_files import temp_path
from scaledql.checkpoint import (
    EXPORT_CONFIG,
    EXPORT_FIELDS,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    EXPORT_WEIGHTS,
    checkpoint_path,
    load_learner,
    network_weights,
    state_scalars,
)
from scaledql.errors import UserError
from scaledql.run_folder import EVAL_DIR, eval_files, run_of_checkpoint

CARD = "README.md"
FILES = (EXPORT_WEIGHTS, EXPORT_CONFIG, CARD)


def _store_candidates(data: str, out: object, run: Path | None) -> list[Path]:
    """Where the run's store may be: its path as given, and — a relative path being relative
    to where training ran — beside the run folder as the run config's ``out`` placed it."""
    found = [Path(data)]
    if run is not None and isinstance(out, str) and not Path(data).is_absolute():
        where = run.resolve()
        for _ in Path(out).parts:  # RUN = BASE/out  →  the data is BASE/data
            where = where.parent
        if where.joinpath(out).resolve() == run.resolve():
            found.append(where / data)
    return found


def data_summary(payload: dict, run: Path | None = None) -> dict[str, Any]:
    """The run's data: its path and identity from the checkpoint and run config, and per game
    what the store's manifests say (counts, behaviour returns, provenance) when it is found."""
    from scaledql.data.store.dataset import data_identity, open_dataset

    run_config = payload.get("run_config") or {}
    path = run_config.get("data")
    out: dict[str, Any] = {"path": path, "identity": payload.get("data_identity"),
                           "fraction": run_config.get("data_fraction", 1.0),
                           "sample": run_config.get("data_sample", "first"), "found": False,
                           "games": {}}
    if not isinstance(path, str):
        return out
    for candidate in _store_candidates(path, run_config.get("out"), run):
        try:
            dataset = open_dataset(candidate, list(payload["games"]))
            break
        except UserError:
            continue
    else:  # moved or deleted since training: the card says so
        return out
    games = [dataset.game(g) for g in payload["games"]]
    current = data_identity(games)
    out["found"], out["found_at"] = True, str(candidate)
    # An older run did not record its data's identity: the store's is what it trained on only
    # if the store has not changed since; ``identity_at_export`` says where it came from.
    out["identity_matches"] = None if out["identity"] is None else out["identity"] == current
    if out["identity"] is None:
        out["identity"], out["identity_at_export"] = current, True
    for g in games:
        info = g.info()
        prov = g.provenance
        out["games"][g.name] = {
            "transitions": info["transitions"], "episodes": info["episodes"],
            "mean_return": info["mean_return"], "normalized": info["normalized_score"],
            "provenance": {k: prov[k] for k in ("source", "command", "behaviour", "seed")
                           if k in prov}}
    return out


def eval_summary(run: Path | None, step: int) -> dict[str, Any] | None:
    """The run's evaluation of this step, else its latest before it."""
    steps = eval_files(run) if run is not None else {}
    usable = [s for s in steps if s <= step]
    if not usable:
        return None
    at = max(usable)
    file = steps[at]
    try:
        report = json.loads(file.read_text())
        games = {g: {**v, "episodes": len(v["returns"])} for g, v in report["games"].items()}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{file}: not an evaluation report ({exc})") from None
    return checked_evaluation({**report, "step": at, "file": f"{EVAL_DIR}/{file.name}",
                               "games": games}, file)


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def checked_evaluation(e: Any, where: Path | str) -> dict[str, Any] | None:
    """An evaluation summary with the types the model card prints (from a run's report, or from
    an earlier export's config.json, which nothing else has checked)."""
    if e is None:
        return None
    try:
        agg = e.get("aggregate") or {}
        aggregate: dict[str, Any] = {}
        for key in ("iqm", "median", "mean"):
            if key in agg:
                lo, hi = agg[f"{key}_ci"]
                aggregate.update({key: float(agg[key]), f"{key}_ci": [float(lo), float(hi)]})
        return {"step": int(e["step"]), "file": str(e["file"]), "suite": str(e.get("suite")),
                "epsilon": _opt(e.get("epsilon")), "seed": e.get("seed"),
                "games": {str(g): {"episodes": int(v["episodes"]), "mean": float(v["mean"]),
                                   "normalized": _opt(v.get("normalized"))}
                          for g, v in e["games"].items()},
                "aggregate": aggregate}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{where}: not an evaluation report ({exc})") from None


def checked_data(d: Any, where: Path | str) -> dict[str, Any]:
    """A data summary with the types the model card prints (see ``checked_evaluation``)."""
    try:
        games = {str(g): {"transitions": int(v["transitions"]), "episodes": int(v["episodes"]),
                          "mean_return": _opt(v.get("mean_return")),
                          "normalized": _opt(v.get("normalized")),
                          "provenance": {str(k): str(x) for k, x in
                                         (v.get("provenance") or {}).items()}}
                 for g, v in (d.get("games") or {}).items()}
        return {**{k: d.get(k) for k in ("path", "identity", "found_at", "identity_matches",
                                         "identity_at_export")},
                "fraction": float(d.get("fraction", 1.0)), "sample": str(d.get("sample", "first")),
                "found": bool(d.get("found")),
                "games": games}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{where}: damaged data section ({exc})") from None


def export_config(source: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json's content, the weights) of the agent at ``source``."""
    learner, payload = load_learner(source, "cpu")
    config: dict[str, Any] = {"format": EXPORT_FORMAT, "export_version": EXPORT_VERSION}
    config.update({k: payload[k] for k in EXPORT_FIELDS if k in payload})
    config["step"] = int(learner.step)
    config["param_counts"] = learner.param_counts()
    config["state"] = state_scalars(learner)
    weights = network_weights(learner)
    config["weights"] = {"file": EXPORT_WEIGHTS, "networks": list(learner.modules()),
                         "tensors": len(weights),
                         "numbers": sum(int(t.numel()) for t in weights.values())}
    if payload.get("weights_only"):  # re-exporting an export: keep what it knew
        file = checkpoint_path(source).parent / EXPORT_CONFIG
        earlier = json.loads(file.read_text())  # read_export has parsed it already
        config["data"] = checked_data(earlier.get("data") or {}, file)
        config["evaluation"] = checked_evaluation(earlier.get("evaluation"), file)
        config["source"] = str(earlier.get("source"))
    else:
        run = run_of_checkpoint(checkpoint_path(source))
        config["data"] = checked_data(data_summary(payload, run), "the run's data")
        config["evaluation"] = eval_summary(run, config["step"])
        config["source"] = str(source)
    return config, weights


def _is_export(folder: Path) -> bool:
    """An earlier export (only its files, its format marker): safe to replace."""
    try:
        names = {p.name for p in folder.iterdir()}
        config = json.loads((folder / EXPORT_CONFIG).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return names <= set(FILES) and isinstance(config, dict) and \
        config.get("format") == EXPORT_FORMAT


def _remove_stale(out: Path) -> None:
    """Temporary folders beside ``out`` left by exporters that were killed."""
    for tmp in out.parent.glob(f".{out.name}.*-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if tmp.is_dir() and pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(tmp, ignore_errors=True)
            except PermissionError:
                pass


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def export_agent(source: Path, out: Path) -> dict[str, int]:
    """Write the export of ``source`` (run folder, checkpoint file or export) to ``out``;
    returns each file's size in bytes."""
    from safetensors.torch import save

    from scaledql.modelcard import model_card

    source, out = Path(source), Path(out)
    if out.exists() and any(out.iterdir()) and not _is_export(out):
        raise UserError(f"--out {out} exists and is not an earlier export; choose a new folder")
    config, weights = export_config(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = temp_path(out)  # a folder, renamed into place whole
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        # One metadata key, Hugging Face's convention: the header's keys come out in hash
        # order, so several would make two exports of one checkpoint differ byte for byte.
        _write(tmp / EXPORT_WEIGHTS, save(weights, metadata={"format": "pt"}))
        _write(tmp / EXPORT_CONFIG, (json.dumps(config, indent=2) + "\n").encode())
        _write(tmp / CARD, model_card(config, shlex.quote(str(out.resolve()))).encode())
        sizes = {name: (tmp / name).stat().st_size for name in FILES}
        if out.exists() and any(out.iterdir()):  # an earlier export: swap it out
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)  # a missing or empty folder: one rename
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return sizes
