"""The run folder: the one module that knows its layout, and ``Run``, a researcher's view of one.

What ``scaledql train`` (and each arm × seed of ``scaledql finetune``) writes in ``RUN/``:

- ``config.json``: the run's configuration (every option; ``--resume`` needs nothing else);
- ``params.json``: parameter counts; ``budget.json``: passes over each game's data;
- ``machines.json``: the machine of each session that trained it (CPU and its vector ISA, cores,
  torch, device, the precision its updates ran in, the step it began at): a resumed run that
  moved to another CPU make says so, and its numbers are that mixture's;
- ``metrics.jsonl``: every logged row (``kind`` "train", "eval" or "episode", ``step``, ...);
  ``metrics.csv`` the same rows as a CSV; ``tensorboard/`` the same again (``wandb_id``: the
  W&B run it logs to);
- ``eval/step_NNNNNNNN.json``: the full evaluation report (``EvalReport.to_dict()``) at step N;
- ``checkpoint.pt``: the latest checkpoint; ``checkpoints/step_NNNNNNNN.pt``: those that
  ``--keep-every`` keeps;
- ``diagnostics.png``: what ``scaledql diagnose`` drew;
- online runs also: ``replay-NNNNNNNNN.npz``, the replay the checkpoint names, and
  ``wall.json``, the wall time summed over the sessions that ran it.

A run *finished at N steps* when its metrics log holds an evaluation row at step N: the loop
logs that row last, after the final checkpoint. Writers go through the helpers here
(``write_config``, ``write_evaluation``, ...), readers through the readers; the payloads are
their owners' (``checkpoint`` the checkpoint format, ``evaluate`` the evaluation report,
``training.metrics`` the rows). Torch-free; pandas is imported only by ``Run.metrics``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaledql.atomic_files import atomic_write_json, atomic_write_text
from scaledql.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

CONFIG = "config.json"
PARAMS = "params.json"
BUDGET = "budget.json"
METRICS = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tensorboard"
WANDB_ID = "wandb_id"  # the W&B run a resumed run continues
DIAGNOSTICS = "diagnostics.png"  # scaledql diagnose's plot
EVAL_DIR = "eval"
CHECKPOINT = "checkpoint.pt"
HISTORY_DIR = "checkpoints"
WALL = "wall.json"
MACHINES = "machines.json"
REPLAY_GLOB = "replay-*.npz"
_EVAL_NAME = re.compile(r"step_(\d+)\.json")
_HISTORY_NAME = re.compile(r"step_(\d+)\.pt")


# -- the layout ------------------------------------------------------------------------------
def config_file(run: Path | str) -> Path:
    return Path(run) / CONFIG


def params_file(run: Path | str) -> Path:
    return Path(run) / PARAMS


def budget_file(run: Path | str) -> Path:
    return Path(run) / BUDGET


def metrics_file(run: Path | str) -> Path:
    return Path(run) / METRICS


def metrics_csv_file(run: Path | str) -> Path:
    return Path(run) / METRICS_CSV


def tensorboard_dir(run: Path | str) -> Path:
    return Path(run) / TENSORBOARD


def wandb_id_file(run: Path | str) -> Path:
    return Path(run) / WANDB_ID


def diagnostics_file(run: Path | str) -> Path:
    return Path(run) / DIAGNOSTICS


def eval_dir(run: Path | str) -> Path:
    return Path(run) / EVAL_DIR


def eval_file(run: Path | str, step: int) -> Path:
    """Where the evaluation report of ``step`` goes (zero-padded: names sort as steps do)."""
    return eval_dir(run) / f"step_{step:08d}.json"


def checkpoint_file(run: Path | str) -> Path:
    return Path(run) / CHECKPOINT


def machines_file(run: Path | str) -> Path:
    return Path(run) / MACHINES


def wall_file(run: Path | str) -> Path:
    return Path(run) / WALL


def replay_name(step: int) -> str:
    """The file name of an online run's replay saved with its checkpoint at ``step``."""
    return f"replay-{step:09d}.npz"


def step_checkpoint_name(step: int) -> str:
    """The file name of a kept checkpoint of ``step`` (history, collection snapshots)."""
    return f"step_{step:08d}.pt"


def history_file(run: Path | str, step: int) -> Path:
    """Where ``--keep-every`` keeps the checkpoint of ``step``."""
    return Path(run) / HISTORY_DIR / step_checkpoint_name(step)


def run_of_checkpoint(file: Path | str) -> Path | None:
    """The run folder a checkpoint file belongs to (its latest or a kept one), if any."""
    file = Path(file)
    if file.name == CHECKPOINT:
        return file.parent
    if file.parent.name == HISTORY_DIR:
        return file.parent.parent
    return None


def is_run(path: Path | str) -> bool:
    """Does ``path`` hold a run (its ``config.json``)?"""
    return config_file(path).is_file()


# -- reading ---------------------------------------------------------------------------------
def read_json(path: Path | str) -> Any:
    """A JSON file's content; one ``UserError`` line when it is missing or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UserError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None


def read_config(run: Path | str) -> dict[str, Any]:
    """The run's ``config.json``; ``UserError`` when there is none or it is not an object."""
    file = config_file(run)
    if not file.is_file():
        raise UserError(f"{run} holds no run (no {CONFIG})")
    config = read_json(file)
    if not isinstance(config, dict):
        raise UserError(f"{file}: not a run configuration")
    return config


def read_params(run: Path | str) -> dict[str, Any] | None:
    """The run's parameter counts (``params.json``); None when it has none."""
    file = params_file(run)
    return read_json(file) if file.is_file() else None


def read_rows(run: Path | str, kind: str | None = None) -> list[dict[str, Any]]:
    """The rows of the run's metrics log (of one ``kind`` if given); [] when there is none."""
    file = metrics_file(run)
    if not file.exists():
        return []
    rows = []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{file}: not valid JSON lines (line {number}: "
                            f"{' '.join(str(exc).split())[:100]})") from None
        if not isinstance(row, dict):
            raise UserError(f"{file}: line {number} is not a metrics row (a JSON object)")
        rows.append(row)
    return [r for r in rows if kind is None or r.get("kind") == kind]


def eval_steps(run: Path | str) -> set[int]:
    """The steps of the evaluation rows in the run's metrics log."""
    return {int(r["step"]) for r in read_rows(run, "eval")}


def finished_at(run: Path | str, steps: int) -> bool:
    """Has the run finished ``steps`` steps (its final evaluation at ``steps`` is logged)?"""
    return steps in eval_steps(run)


def eval_files(run: Path | str) -> dict[int, Path]:
    """step → the run's evaluation report file, by step; {} when it has none."""
    folder = eval_dir(run)
    if not folder.is_dir():
        return {}
    found = {int(m.group(1)): p for p in folder.glob("step_*.json")
             if (m := _EVAL_NAME.fullmatch(p.name))}
    return dict(sorted(found.items()))


def read_evaluation(file: Path | str) -> dict[str, Any]:
    """One evaluation report; ``UserError`` when it is not JSON or not an object."""
    report = read_json(file)
    if not isinstance(report, dict):
        raise UserError(f"{file}: not an evaluation report")
    return report


def evaluations(run: Path | str) -> dict[int, dict[str, Any]]:
    """step → the run's evaluation report at that step, by step."""
    return {step: read_evaluation(file) for step, file in eval_files(run).items()}


def latest_evaluation(run: Path | str) -> tuple[int, dict[str, Any]] | None:
    """(step, report) of the run's last evaluation; None when it has none."""
    files = eval_files(run)
    if not files:
        return None
    step = max(files)
    return step, read_evaluation(files[step])


def history_files(run: Path | str) -> dict[int, Path]:
    """step → the checkpoint ``--keep-every`` kept, by step."""
    folder = Path(run) / HISTORY_DIR
    found = {int(m.group(1)): p for p in folder.glob("step_*.pt")
             if (m := _HISTORY_NAME.fullmatch(p.name))} if folder.is_dir() else {}
    return dict(sorted(found.items()))


def read_wall(run: Path | str) -> dict[str, Any]:
    """``{"seconds", "sessions"}``: the wall time an online run took so far (0 and 0 before)."""
    file = wall_file(run)
    return read_json(file) if file.exists() else {"seconds": 0.0, "sessions": 0}


def read_machines(run: Path | str) -> list[dict[str, Any]]:
    """The sessions' machine records, oldest first ([] for runs from before they were kept)."""
    file = machines_file(run)
    records = read_json(file) if file.exists() else []
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(f"{file}: not a list of machine records")
    return records


# -- writing ---------------------------------------------------------------------------------
def write_wall(run: Path | str, seconds: float, sessions: int) -> Path:
    atomic_write_json(wall_file(run), {"seconds": seconds, "sessions": sessions})
    return wall_file(run)


def record_machine(run: Path | str, machine: dict[str, Any], *, precision: str,
                   from_step: int) -> Path:
    """Append this session's record to ``machines.json``: ``machine`` (``device.machine_record``),
    the precision its updates run in, the step it begins at and when (UTC)."""
    import time

    record = {**machine, "precision": precision, "from_step": from_step,
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(machines_file(run), [*read_machines(run), record])
    return machines_file(run)


def write_config(run: Path | str, config: dict[str, Any]) -> Path:
    atomic_write_json(config_file(run), config)
    return config_file(run)


def write_params(run: Path | str, counts: dict[str, int]) -> Path:
    atomic_write_json(params_file(run), counts)
    return params_file(run)


def write_budget(run: Path | str, budget: dict[str, Any]) -> Path:
    atomic_write_json(budget_file(run), budget)
    return budget_file(run)


def write_evaluation(run: Path | str, step: int, report: dict[str, Any]) -> Path:
    """Write the evaluation report of ``step`` (atomically: readers never see half of one)."""
    file = eval_file(run, step)
    atomic_write_text(file, json.dumps(report, indent=2))
    return file


# -- the researcher's object -----------------------------------------------------------------
class Run:
    """A run folder as data: ``Run("runs/a").metrics("eval")``, ``.final_evaluation``, ``.scores``.

    Every property reads the folder when asked, so a run still training shows its latest
    rows. A path that is not a run folder (no ``config.json``) is one ``UserError`` line.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"{self.path} " + ("is not a folder" if self.path.exists()
                                               else "does not exist"))
        if not is_run(self.path):
            inside = sorted(p for p in self.path.iterdir() if p.is_dir() and is_run(p))
            if inside:  # a folder of runs (`scaledql demo`'s: agent, bc, dt; a study's)
                raise UserError(f"{self.path} is not a run folder but holds {len(inside)}: "
                                f"{', '.join(p.name for p in inside)}; pass one of them "
                                f"(Run({str(inside[0])!r}))")
            raise UserError(f"{self.path} is not a run folder (no {CONFIG}; `scaledql train "
                            "--out` writes one)")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def config(self) -> dict[str, Any]:
        """Its configuration (``config.json``, ``RunConfig.to_dict()`` for a training run)."""
        return read_config(self.path)

    @property
    def params(self) -> dict[str, Any] | None:
        """Its parameter counts per part and ``total``; None when not written."""
        return read_params(self.path)

    @property
    def machines(self) -> list[dict[str, Any]]:
        """The machine of each session that trained it (CPU, cores, torch, device, precision,
        ``from_step``, ``at``), oldest first; [] for runs from before they were kept."""
        return read_machines(self.path)

    def rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Its metrics rows (``kind`` "train", "eval", "episode"; None: all), as logged."""
        return read_rows(self.path, kind)

    def metrics(self, kind: str | None = None) -> pd.DataFrame:
        """Its metrics rows as a DataFrame, one row per logged row (columns: their union)."""
        import pandas as pd

        return pd.DataFrame(self.rows(kind))

    @property
    def evaluations(self) -> dict[int, dict[str, Any]]:
        """step → its evaluation report (``suite``, ``games``, ``aggregate``, ...), by step."""
        return evaluations(self.path)

    @property
    def final_evaluation(self) -> dict[str, Any] | None:
        """Its latest evaluation report (the final one of a finished run); None before any."""
        latest = latest_evaluation(self.path)
        return latest[1] if latest is not None else None

    @property
    def scores(self) -> dict[str, dict[str, Any]]:
        """game → ``returns``, ``mean`` and ``normalized`` (and action counts) of its latest
        evaluation, as the report holds them; {} before any."""
        final = self.final_evaluation
        return dict(final.get("games") or {}) if final is not None else {}

    @property
    def finished(self) -> bool:
        """Has it reached its configured ``steps`` and logged the evaluation there?"""
        steps = self.config.get("steps")
        return isinstance(steps, int) and finished_at(self.path, steps)

    @property
    def checkpoint(self) -> Path | None:
        """Its latest checkpoint file; None when it has none."""
        file = checkpoint_file(self.path)
        return file if file.is_file() else None

    @property
    def history(self) -> dict[int, Path]:
        """step → each checkpoint ``--keep-every`` kept."""
        return history_files(self.path)
