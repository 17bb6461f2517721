"""The one offline training loop: learner × prefetched sampler → update → log → checkpoint → eval.

It knows the learner interface (``agents.base.Learner``) and the data layer, nothing of any
algorithm or game: the learner says which batches it needs (``batch_spec``), evaluation is a
callback the caller may give (the CLI passes one that plays the suite).

The run's lifecycle is a ``training.session.RunSession`` (``OfflineSession``: its phases are
the loop's); the update metrics between two log rows stay on the device
(``training.device_window``), so a non-finite loss stops the run before any checkpoint after it.

Runs resume bit-for-bit on CPU after a kill, Ctrl-C or SIGTERM: a checkpoint holds the learner,
each sampler's RNG state as of the last batch *used* (not the ones sampled ahead) and the global
RNG states; a signal during an update is acted on once that update has finished.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaledql.agents.base import Learner, Problem
from scaledql.agents.registry import learner_class
from scaledql.checkpoint import load_learner_state, missing_resume_state, run_payload
from scaledql.data.sampling.block_pool import PoolOptions
from scaledql.data.sampling.prefetch import Prefetcher
from scaledql.data.sampling.sampler import BatchSpec, fraction_of, make_sampler
from scaledql.data.store.dataset import Dataset, check_contents, data_identity, open_dataset
from scaledql.data.store.episodes import kept_text
from scaledql.errors import UserError
from scaledql.policies import Policy
from scaledql.progress import ProgressBar
from scaledql.run_folder import write_budget
from scaledql.training.budget import budget_line, run_budget
from scaledql.training.config import RunConfig, resume_differences
from scaledql.training.device_window import DeviceWindow
from scaledql.training.diagnostics import PROBE_SIZE, UpdateProbe, representation_metrics
from scaledql.training.distributed import Dist, gather, init_distributed, shutdown
from scaledql.training.lifecycle import StopSignals, crossed
from scaledql.training.metrics import WandbOptions
from scaledql.training.rng import rng_state, seed_everything, set_rng_state
from scaledql.training.session import Callback, RunSession
from scaledql.training.validation import ValidationProbe

EvalFn = Callable[[Policy, list[str], int], dict]




def train(cfg: RunConfig, resume: bool = False, evaluate_fn: EvalFn | None = None,
          progress: bool = True, stop_after: int | None = None,
          wandb: WandbOptions | None = None, callbacks: Sequence[Callback] = (),
          dataset: Dataset | None = None) -> dict:
    """Run (or resume) training; returns a summary dict. ``stop_after``: stop (with a checkpoint)
    after that many steps in this call, as an interrupt would — used to test resumption.
    ``progress``: a live bar allowed (else plain lines; ``scaledql.progress``); ``wandb``: also
    log to Weights & Biases; ``callbacks``: each called with every row written to
    the run's metrics log (in the main process), right after it is written. ``dataset``: the
    store ``cfg.data`` already opened for ``cfg.games`` (else it is opened here)."""
    cfg.validate()
    # The data's checks, what its arrays hold included, before the run folder exists
    if dataset is None:
        dataset = open_dataset(Path(cfg.data), cfg.games, contents=True)
    else:
        check_contents(dataset)
    if cfg.validation > 0:
        for game in cfg.games or dataset.games:
            if fraction_of(dataset.game(game), cfg.episodes("heldout"))["episodes"] == 0:
                raise UserError(f"game {game}: the heldout part of its episodes is empty (too "
                                f"few episodes for --validation {cfg.validation:g})")
    dist, device = init_distributed(cfg.device)
    return _train(OfflineSession(cfg, dist, device, dataset, evaluate_fn, callbacks), resume,
                  progress, stop_after, wandb)


def _train(session: OfflineSession, resume: bool, progress: bool, stop_after: int | None,
           wandb: WandbOptions | None) -> dict:
    with session:
        payload = session.resume_or_start(resume, session.check_resume)
        session.build(payload)
        session.begin(wandb)
        return session.run_steps(progress, stop_after)

class OfflineSession(RunSession):
    """One offline run's phases: ``check_resume`` (the saved run against ``cfg`` and the
    data), ``build`` (the learner, restored or fresh, and its prefetched sampler), ``begin``
    (the run folder's files), ``run_steps`` (``step`` until done or stopped, ``log``,
    ``checkpoint`` and ``evaluate`` as due), ``finish`` (the last checkpoint and evaluation)."""

    def __init__(self, cfg: RunConfig, dist: Dist, device: torch.device, dataset: Dataset,
                 evaluate_fn: EvalFn | None, callbacks: Sequence[Callback]) -> None:
        super().__init__(Path(cfg.out), main=dist.is_main, lock="training run",
                         callbacks=callbacks)
        self.cfg, self.dist, self.device, self.dataset = cfg, dist, device, dataset
        self.evaluate_fn = evaluate_fn
        self.games = list(cfg.games or dataset.games)
        self.data = [dataset.game(g) for g in self.games]
        self.suite = self.data[0].suite
        self.env_options = self.data[0].env_options
        self.identity = data_identity(self.data)
        self.probe: list[torch.Tensor] = []  # srank's and DR3's fixed states, drawn at first use
        self.last_eval: list[dict] = []  # this call's latest evaluation row (the summary's)

    # -- resume or start -----------------------------------------------------------------------
    def check_resume(self, payload: dict) -> None:
        cfg, file = self.cfg, self.checkpoint_file
        missing = missing_resume_state(payload)
        if missing is not None:
            raise UserError(f"{file} is not a training run's checkpoint: it lacks a valid "
                            f"{missing} (nothing to resume)")
        saved = RunConfig.from_dict(payload["run_config"], f"{file} run_config")
        diff = resume_differences(saved, cfg)
        if diff:
            raise UserError(f"--resume: options differ from the run's config ({', '.join(diff)})")
        if cfg.steps < payload["step"]:
            raise UserError(f"--resume: the run is at step {payload['step']}; --steps "
                            f"{cfg.steps} would go back")
        if payload.get("data_identity", self.identity) != self.identity:
            raise UserError(f"--resume: the data in {cfg.data} is not the data this run trained "
                            "on (its games' manifests differ)")

    def build(self, payload: dict | None) -> None:
        """The learner (restored from ``payload``, else fresh or transferred) and its sampler."""
        cfg, dist, device = self.cfg, self.dist, self.device
        problem = Problem.of(self.data, where=str(cfg.data))
        seed_everything(cfg.seed)
        learner: Learner = learner_class(cfg.algo)(cfg.learner, problem, device,
                                                   distributed=dist.active)
        self.learner, self.spec = learner, learner.batch_spec()
        if self.spec.batch_size % dist.world_size:
            raise UserError(f"batch size {self.spec.batch_size} is not divisible by the "
                            f"{dist.world_size} processes")
        if payload is not None:
            load_learner_state(learner, payload["learner"], self.checkpoint_file)
            set_rng_state(payload["rng"])
        elif cfg.init_from:
            from scaledql.transfer import transfer_torso

            transfer_torso(learner, Path(cfg.init_from), cfg.init_parts, cfg.freeze_encoder,
                           verbose=dist.is_main)
        if cfg.freeze_encoder:
            learner.freeze_encoder()
        self.workers = cfg.sample_workers if cfg.sample_workers is not None \
            else int(device.type == "cuda")
        # --resident-gb is per process: each sampling thread's sampler holds its share
        self.pool = None if cfg.resident_gb is None else PoolOptions(
            int(cfg.resident_gb * 1e9) // max(1, self.workers), rotate_every=cfg.rotate_every,
            rotate_share=cfg.rotate_share)

        def make(worker: int) -> Any:
            seq = np.random.SeedSequence([cfg.seed, dist.rank, worker])
            return make_sampler(self.dataset, self.games, self.spec,
                                self.spec.batch_size // dist.world_size, seq, pool=self.pool,
                                episodes=cfg.episodes())

        self.prefetcher = Prefetcher(make, device, workers=self.workers, depth=cfg.prefetch,
                                     states=payload["prefetch"][dist.rank] if payload else None)
        self.start_step = learner.step
        self.validation = ValidationProbe(self.dataset, self.games, self.spec, cfg, self.pool)

    def begin(self, wandb: WandbOptions | None) -> None:
        """The run folder's config, parameters, machine and budget; the run's opening lines."""
        cfg, learner, games = self.cfg, self.learner, self.games
        machine = self.start(cfg.to_dict(), learner, self.device, self.start_step, params=True,
                             wandb=wandb)
        self.counts = counts = learner.param_counts()
        if not self.main:
            return
        kept = {g: fraction_of(d, cfg.episodes()) for g, d in zip(games, self.data, strict=True)}
        budget = run_budget(cfg.to_dict(), {g: k["transitions"] for g, k in kept.items()})
        write_budget(self.run, budget)
        parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "total")
        print(f"[train] {cfg.algo} on {len(games)} games, obs {learner.problem.obs_shape}: "
              f"{counts['total']:,} parameters ({parts}); "
              f"device {self.device} ({learner.precision}; {machine['cpu']}); "
              f"{self.dist.world_size} process(es), {self.workers} sampling thread(s)",
              file=sys.stderr)
        if cfg.data_fraction < 1 or cfg.validation > 0:
            held = f", {cfg.validation:g} of them held out" if cfg.validation > 0 else ""
            print(f"[train] data fraction {cfg.data_fraction:g}{held}: trains on " + "; ".join(
                f"{g} {kept_text(k, cfg.data_sample)}" for g, k in kept.items()), file=sys.stderr)
        print(f"[train] budget: {budget_line(budget)}", file=sys.stderr)

    # -- step, log, checkpoint, evaluate -------------------------------------------------------
    def run_steps(self, progress: bool, stop_after: int | None) -> dict:
        """``step`` until the run's steps are done, ``stop_after`` steps were made in this call
        or a stop is asked for (Ctrl-C, SIGTERM: saved and left; during an update, once it has
        finished, for an exact resume); then ``finish``."""
        cfg, learner = self.cfg, self.learner
        self.bar = ProgressBar(cfg.steps, f"train {cfg.algo}", "step", initial=self.start_step,
                               bar=progress, enabled=self.main)
        self.window = DeviceWindow(self.device, self.start_step)
        self.t0, self.steps_in_window = time.perf_counter(), 0
        self.signals = StopSignals(interrupt_when_idle=True, enabled=self.main)
        interrupted = False
        try:
            with self.signals:
                try:
                    while learner.step < cfg.steps and not self.signals.requested:
                        if stop_after is not None and learner.step - self.start_step >= stop_after:
                            break
                        self.step()
                    interrupted = self.signals.requested
                except KeyboardInterrupt:
                    interrupted = True
                finally:  # a failure's last line is its error
                    self.bar.close(last_line=sys.exc_info()[0] is None)
                    self.prefetcher.close()
            return self.finish(interrupted)
        finally:
            self.close_metrics()
            if not interrupted:
                shutdown(self.dist)

    def step(self) -> None:
        """One gradient step, then its row, checkpoint and evaluation where due."""
        cfg, learner = self.cfg, self.learner
        self.signals.busy = True
        logged = crossed(learner.step, learner.step + 1, cfg.log_every)
        update_probe = UpdateProbe(learner) if logged and cfg.diagnostics else None
        self.window.add(learner.update(self.prefetcher.next()))
        self.signals.busy = False
        self.steps_in_window += 1
        self.bar.update(1)
        step = learner.step
        due = crossed(step - 1, step, cfg.checkpoint_every) or self.kept(step)
        if logged or due:
            self.window.check_finite(self.checkpoint_file)
        if logged:
            seconds = time.perf_counter() - self.t0
            row = {"step": step, **self.window.take(),
                   **(update_probe.after() if update_probe is not None else {}),
                   "steps_per_second": self.steps_in_window / seconds,
                   "samples_per_second": self.steps_in_window * self.spec.batch_size / seconds}
            self.log(row)
            self.bar.set_postfix(loss=f"{row['loss']:.3f}",
                                 sps=f"{row['steps_per_second']:.1f}", refresh=False)
            self.t0, self.steps_in_window = time.perf_counter(), 0
        # Evaluate first: a run killed between the two resumes from the checkpoint before and
        # evaluates this step again, instead of passing it with no evaluation logged.
        if crossed(step - 1, step, cfg.eval_every) and step < cfg.steps:
            self.evaluate()
        if due:
            self.checkpoint()

    def kept(self, step: int) -> bool:
        """A step whose checkpoint --keep-every keeps for good."""
        return self.cfg.keep_every > 0 and step > 0 and step % self.cfg.keep_every == 0

    def checkpoint(self) -> None:
        states = gather(self.prefetcher.state_dict(), self.dist)
        if self.main:
            step = self.learner.step
            self.write_checkpoint(
                run_payload(self.learner, self.suite, self.env_options,
                            run_config=self.cfg.to_dict(), prefetch=states, rng=rng_state(),
                            data_identity=self.identity),
                keep_step=step if self.kept(step) else None)

    def representation(self) -> dict:
        if not self.cfg.diagnostics:
            return {}
        cfg, pool = self.cfg, self.pool
        if not self.probe:
            # Its own seed stream: drawing it leaves the training batches as they were.
            probe_pool = None if pool is None else PoolOptions(
                min(pool.resident_bytes, 256 * 2**20), rotate_every=cfg.rotate_every,
                rotate_share=cfg.rotate_share)
            sampler = make_sampler(self.dataset, self.games, BatchSpec("transitions", PROBE_SIZE),
                                   PROBE_SIZE, np.random.SeedSequence([cfg.seed, 2**32 - 1]),
                                   pool=probe_pool, episodes=cfg.episodes())
            batch = sampler.sample()
            self.probe.extend(torch.from_numpy(np.ascontiguousarray(x))
                              for x in (batch.obs, batch.next_obs, batch.game_id))
        return representation_metrics(self.learner, *self.probe)

    def evaluate(self) -> None:
        learner = self.learner
        if self.evaluate_fn is None or not self.main:
            return
        assert self.metrics is not None
        if any(r["step"] == learner.step for r in self.metrics.rows("eval")):
            return  # a resumed, finished run: this evaluation is already logged
        row = {"step": learner.step,
               **self.evaluate_fn(learner.policy(), self.games, learner.step),
               **self.representation(), **self.validation.losses(learner)}
        self.log(row, kind="eval")
        self.last_eval[:] = [row]

    def finish(self, interrupted: bool) -> dict:
        """The last checkpoint; the final evaluation of a run that reached its steps."""
        learner, run = self.learner, str(self.run)
        self.window.check_finite(self.checkpoint_file)
        self.checkpoint()
        if interrupted or learner.step < self.cfg.steps:
            if interrupted and self.main:
                print(f"[train] interrupted at step {learner.step}; checkpoint saved to "
                      f"{self.checkpoint_file}; continue with --resume", file=sys.stderr)
            return {"step": learner.step, "interrupted": interrupted, "run": run}
        self.evaluate()
        if not self.last_eval and self.metrics is not None:
            # a finished run resumed: its final evaluation is already logged
            self.last_eval[:] = [r for r in self.metrics.rows("eval")
                                 if r["step"] == learner.step][-1:]
        return {"step": learner.step, "interrupted": False, "run": run, "games": self.games,
                "param_counts": self.counts, "rank": self.dist.rank,
                "evaluation": self.last_eval[0] if self.last_eval else None}
