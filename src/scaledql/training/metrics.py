"""Run logs: the metrics log (every row, JSON lines), its CSV copy (the same rows, a valid CSV),
TensorBoard and, when asked, Weights & Biases — all from one ``write``. Rank 0 only.

Every row carries ``kind`` (``train`` or ``eval``) and ``step``; TensorBoard and W&B keys are
``kind/name``. The CSV's header is the union of all columns so far; when a row brings new
columns (the first evaluation does) the CSV is rewritten whole from the JSONL, atomically, so
``pandas.read_csv`` always reads it. ``write_config`` records the run's configuration and
parameter counts: TensorBoard text panels and hparams (so runs can be compared by option in
its HParams tab), W&B's run config.

W&B is optional: ``wandb`` is imported only when a ``WandbOptions`` is given, and a missing
package is one ``UserError``. A resumed run continues the same W&B run (its id is kept in
``RUN/wandb_id``). Where the logs lie is ``run_folder``'s; reading them back is
``run_folder.read_rows``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaledql.atomic_files import atomic_write_text
from scaledql.errors import UserError
from scaledql.run_folder import (
    metrics_csv_file,
    metrics_file,
    read_rows,
    tensorboard_dir,
    wandb_id_file,
)

FIRST_COLUMNS = ["kind", "step"]
# Metrics the TensorBoard HParams tab shows next to each run's options (tags written by write).
HPARAM_METRICS = ("eval/iqm", "eval/mean", "train/loss")


@dataclass(frozen=True)
class WandbOptions:
    project: str = "scaledql"
    entity: str | None = None  # None: the user's default entity
    name: str | None = None  # None: the run folder's name
    mode: str | None = None  # "online" / "offline"; None: W&B's own (WANDB_MODE)


def wandb_available() -> bool:
    """Is wandb importable? Asked without importing it (seconds, and side effects)."""
    import importlib.util
    import sys

    if "wandb" in sys.modules:  # imported already (or blocked: None)
        return sys.modules["wandb"] is not None
    return importlib.util.find_spec("wandb") is not None


def _start_wandb(options: WandbOptions, run: Path) -> Any:
    try:
        import wandb
    except ModuleNotFoundError:
        raise UserError("--wandb: the wandb package is not installed (pip install wandb)") \
            from None
    id_file = wandb_id_file(run)
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    atomic_write_text(id_file, run_id + "\n")
    kwargs: dict[str, Any] = {"project": options.project, "entity": options.entity,
                              "name": options.name or run.resolve().name, "id": run_id,
                              "resume": "allow", "dir": str(run)}
    if options.mode is not None:
        kwargs["mode"] = options.mode
    try:
        return wandb.init(**kwargs)
    except Exception as exc:  # W&B's own errors (login, network) vary by version: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"--wandb: W&B did not start ({first[:200]})") from None


class MetricsLog:
    def __init__(self, run: Path, enabled: bool = True, resume_step: int = 0,
                 tensorboard: bool = True, wandb: WandbOptions | None = None) -> None:
        self.enabled = enabled
        self.jsonl = metrics_file(run)
        self.csv = metrics_csv_file(run)
        self.tb = None
        self.wandb: Any = None
        self.columns: list[str] = []
        if not enabled:
            return
        if wandb is not None:
            self.wandb = _start_wandb(wandb, run)
        rows = self._rows_up_to(resume_step) if resume_step else []
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._rewrite_csv(rows)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(tensorboard_dir(run)), purge_step=resume_step or None)

    def _rows_up_to(self, step: int) -> list[dict[str, Any]]:
        """Rows logged up to ``step`` (those after it are redone by the resumed run)."""
        return [r for r in read_rows(self.jsonl.parent) if r.get("step", 0) <= step]

    def rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self._rows_up_to(math.inf) if self.enabled else []
        return [r for r in rows if kind is None or r.get("kind") == kind]

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        seen = dict.fromkeys(FIRST_COLUMNS)
        for r in rows:
            seen.update(dict.fromkeys(r))
        self.columns = list(seen)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.csv, text.getvalue())

    def write(self, row: dict[str, Any], kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"kind": kind, **row}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        if set(row) - set(self.columns):
            self._rewrite_csv(self.rows())
        else:
            with open(self.csv, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, lineterminator="\n").writerow(row)
        scalars = {f"{kind}/{k}": v for k, v in row.items() if k not in FIRST_COLUMNS
                   and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        step = int(row["step"])
        if self.tb is not None:
            for tag, v in scalars.items():
                self.tb.add_scalar(tag, v, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def write_text(self, tag: str, text: str) -> None:
        """A text panel in TensorBoard."""
        if self.tb is not None:
            self.tb.add_text(tag, f"```\n{text}\n```", 0)

    def write_config(self, config: dict[str, Any], param_counts: dict[str, int]) -> None:
        """The run's configuration and parameter counts: TensorBoard text panels and hparams,
        the W&B run's config (``learner`` nested, ``param_counts`` added)."""
        if not self.enabled:
            return
        self.write_text("config", json.dumps(config, indent=2))
        self.write_text("parameters", json.dumps(param_counts, indent=2))
        if self.tb is not None:
            from torch.utils.tensorboard.summary import hparams

            # Written into this run's own event file (SummaryWriter.add_hparams would make a
            # separate sub-run); no session-end record: the run has only started.
            experiment, start, _ = hparams(hparam_values(config, param_counts),
                                           dict.fromkeys(HPARAM_METRICS, 0.0))
            writer = self.tb._get_file_writer()
            writer.add_summary(experiment)
            writer.add_summary(start)
        if self.wandb is not None:
            self.wandb.config.update({**config, "param_counts": param_counts},
                                     allow_val_change=True)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def hparam_values(config: dict[str, Any], param_counts: dict[str, int]) -> dict[str, Any]:
    """Flat scalar options for TensorBoard's HParams tab (``learner.lr``, ``params/total``):
    it takes numbers, strings and booleans only, so None and lists become text."""
    flat = {k: v for k, v in config.items() if k != "learner"}
    flat.update({f"learner.{k}": v for k, v in (config.get("learner") or {}).items()})
    flat.update({f"params/{k}": v for k, v in param_counts.items()})
    return {k: v if isinstance(v, bool | int | float | str) else
            "none" if v is None else json.dumps(v) for k, v in flat.items()}
