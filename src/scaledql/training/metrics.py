"""Run logs: ``metrics.jsonl`` (every row), ``metrics.csv`` (the same rows, a valid CSV) and
TensorBoard, all from one ``write``. Rank 0 only.

Every row carries ``kind`` (``train`` or ``eval``) and ``step``; TensorBoard tags are
``kind/name``. The CSV's header is the union of all columns so far; when a row brings new
columns (the first evaluation does) the CSV is rewritten whole from the JSONL, atomically, so
``pandas.read_csv`` always reads it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

FIRST_COLUMNS = ["kind", "step"]


class MetricsLog:
    def __init__(self, run: Path, enabled: bool = True, resume_step: int = 0,
                 tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.jsonl = run / "metrics.jsonl"
        self.csv = run / "metrics.csv"
        self.tb = None
        self.columns: list[str] = []
        if not enabled:
            return
        rows = self._rows_up_to(resume_step) if resume_step else []
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._rewrite_csv(rows)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tensorboard"), purge_step=resume_step or None)

    def _rows_up_to(self, step: int) -> list[dict[str, Any]]:
        """Rows logged up to ``step`` (those after it are redone by the resumed run)."""
        if not self.jsonl.exists():
            return []
        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
        return [r for r in rows if r.get("step", 0) <= step]

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
        tmp = self.csv.with_name(f".{self.csv.name}.tmp-{os.getpid()}")
        tmp.write_text(text.getvalue())
        os.replace(tmp, self.csv)

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
        if self.tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k not in FIRST_COLUMNS and isinstance(v, int | float) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def write_text(self, tag: str, text: str) -> None:
        """A text panel in TensorBoard (the run's config, parameter counts)."""
        if self.tb is not None:
            self.tb.add_text(tag, f"```\n{text}\n```", 0)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
