"""One run's lifecycle in named phases, shared by offline training, the online run and
collection (the shape of Dopamine's ``Runner``, whose offline runner overrides some phases):

- ``open``: take the run folder (its lock, where the run has one);
- ``resume_or_start``: the saved checkpoint to continue from, checked by the run, or a fresh
  start (a folder that already holds a run is refused where the run must be asked to resume);
- ``start``: the run's config, machine and parameter counts written, its metrics log opened;
- ``step``: one unit of work (a gradient step, a vector step), the subclass's;
- ``log``: a metrics row to the log and to the caller's callbacks;
- ``evaluate``: the subclass's evaluation, logged;
- ``checkpoint``: the payload (``checkpoint.run_payload``) written atomically, a permanent
  copy kept where the run keeps one;
- ``close``: the metrics log closed, the lock released.

Sessions are context managers: ``with Session(...) as s`` opens and closes. The payload's
keys and whether it can resume belong to ``scaledql.checkpoint``; the run folder's files to
``scaledql.run_folder``; when something is due and how a stop is asked for to
``training.lifecycle``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from scaledql.atomic_files import exclusive_lock
from scaledql.checkpoint import keep_copy, load_checkpoint, save_checkpoint
from scaledql.device import machine_record
from scaledql.errors import UserError
from scaledql.run_folder import checkpoint_file, record_machine, write_config, write_params
from scaledql.training.metrics import MetricsLog, WandbOptions

# Called with every metrics row as it is logged (``kind`` "train", "eval", ...; ``step``, ...).
Callback = Callable[[dict], None]


class RunSession:
    """The phases every run shares; a subclass adds its ``step`` and ``evaluate``.

    ``run``: the run folder (its ``checkpoint.pt``, config, metrics log). ``main``: this
    process writes the run's files (False on a distributed run's other ranks). ``lock``: what
    the folder's exclusive lock names the holder (None: the run takes no lock)."""

    def __init__(self, run: Path, *, main: bool = True, lock: str | None = None,
                 callbacks: Sequence[Callback] = ()) -> None:
        self.run = Path(run)
        self.main = main
        self.lock = lock
        self.callbacks = list(callbacks)
        self.metrics: MetricsLog | None = None
        self._held = ExitStack()

    @property
    def checkpoint_file(self) -> Path:
        return checkpoint_file(self.run)

    # -- open ----------------------------------------------------------------------------------
    def open(self) -> RunSession:
        if self.main and self.lock is not None:
            self._held.enter_context(exclusive_lock(self.run, self.lock))
        return self

    def __enter__(self) -> RunSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close(*exc)

    # -- resume or start -----------------------------------------------------------------------
    def resume_or_start(self, resume: bool | None,
                        check: Callable[[dict], None] = lambda payload: None) -> dict | None:
        """The checkpoint to continue from (``check`` raises ``UserError`` where it does not
        fit this run), or None for a fresh start. ``resume`` True: a checkpoint must be there;
        False: none may be; None: continue one where there is one."""
        file = self.checkpoint_file
        if resume is False:
            if file.exists():
                raise UserError(f"{self.run} already holds a run; pass --resume to continue it "
                                "or choose another --out")
            return None
        if not file.exists():
            if resume:
                raise UserError(f"--resume: no checkpoint in {self.run}")
            return None
        payload = load_checkpoint(file, "cpu")
        check(payload)
        return payload

    # -- start ---------------------------------------------------------------------------------
    def start(self, config: dict[str, Any], learner: Any, device: torch.device, from_step: int,
              *, params: bool = False, wandb: WandbOptions | None = None) -> dict[str, Any]:
        """Write the run's config (and parameter counts where ``params``) and machine, open its
        metrics log at ``from_step``; returns the machine record."""
        counts = learner.param_counts()
        machine: dict[str, Any] = {}
        if self.main:
            write_config(self.run, config)
            if params:
                write_params(self.run, counts)
            machine = machine_record(device)
            record_machine(self.run, machine, precision=learner.precision, from_step=from_step)
        self.metrics = MetricsLog(self.run, self.main, from_step, wandb=wandb)
        if self.main:
            self.metrics.write_config(config, counts)
        return machine

    # -- step, evaluate, checkpoint: the subclass's ---------------------------------------------
    def step(self) -> Any:
        """One unit of work (a gradient step; the online loop's vector step)."""
        raise NotImplementedError

    def evaluate(self) -> None:
        """Evaluate the learner as it is now, and log it."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Build this run's payload (``checkpoint.run_payload``) and ``write_checkpoint`` it."""
        raise NotImplementedError

    # -- log -----------------------------------------------------------------------------------
    def log(self, row: dict[str, Any], kind: str = "train") -> None:
        assert self.metrics is not None, "a row logged before start or after close"
        self.metrics.write(row, kind=kind)
        if self.main:
            for callback in self.callbacks:
                callback({"kind": kind, **row})

    # -- checkpoint ----------------------------------------------------------------------------
    def write_checkpoint(self, payload: dict[str, Any], keep_step: int | None = None,
                         file: Path | None = None) -> None:
        """Write ``payload`` (default: to the run's checkpoint); ``keep_step``: also keep a
        permanent copy named by that step."""
        target = file if file is not None else self.checkpoint_file
        save_checkpoint(payload, target)
        if keep_step is not None:
            keep_copy(target, keep_step)

    # -- close ---------------------------------------------------------------------------------
    def close_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    def close(self, *exc: object) -> None:
        try:
            self.close_metrics()
        finally:
            self._held.__exit__(*(exc or (None, None, None)))
