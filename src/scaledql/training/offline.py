"""The one offline training loop: learner × prefetched sampler → update → log → checkpoint → eval.

It knows the learner interface (``agents.base.Learner``) and the data layer, nothing of any
algorithm or game: the learner says which batches it needs (``batch_spec``), evaluation is a
callback the caller may give (the CLI passes one that plays the suite).

Per step the update's metrics stay on the device and are summed there; they are read back
(one host-device synchronisation) only when a row is logged or a checkpoint is due, which is also
when a non-finite loss is noticed: the run stops before writing any checkpoint after it, naming
the first bad step, so the last good checkpoint is kept.

Runs resume bit-for-bit on CPU after a kill, Ctrl-C or SIGTERM: a checkpoint holds the learner,
each sampler's RNG state as of the last batch *used* (not the ones sampled ahead) and the global
RNG states; a signal during an update is acted on once that update has finished.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from scaledql.agents.base import Learner, Problem
from scaledql.agents.registry import learner_class
from scaledql.checkpoint import (
    keep_copy,
    learner_payload,
    load_checkpoint,
    load_learner_state,
    save_checkpoint,
)
from scaledql.data.pool import PoolOptions
from scaledql.data.prefetch import Prefetcher
from scaledql.data.sampler import BatchSpec, fraction_of, make_sampler
from scaledql.data.store import data_identity, open_dataset
from scaledql.device import machine_record
from scaledql.errors import UserError
from scaledql.io import exclusive_lock
from scaledql.policies import Policy
from scaledql.progress import ProgressBar
from scaledql.run_folder import (
    checkpoint_file,
    record_machine,
    write_budget,
    write_config,
    write_params,
)
from scaledql.training.budget import budget_line, run_budget
from scaledql.training.config import RunConfig, resume_differences
from scaledql.training.diagnostics import PROBE_SIZE, UpdateProbe, representation_metrics
from scaledql.training.distributed import Dist, gather, init_distributed, shutdown
from scaledql.training.lifecycle import StopSignals, crossed
from scaledql.training.metrics import MetricsLog, WandbOptions
from scaledql.training.rng import rng_state, seed_everything, set_rng_state
from scaledql.training.validation import ValidationProbe

EvalFn = Callable[[Policy, list[str], int], dict]
# Called with every metrics row as it is logged (``kind`` "train" or "eval", ``step``, ...).
Callback = Callable[[dict], None]


class NonFiniteLoss(UserError):
    pass


class _DeviceWindow:
    """Sums of the update metrics since the last log, kept on the device, and the first step
    whose loss was not finite (-1 while none was)."""

    def __init__(self, device: torch.device, step: int) -> None:
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.step = torch.tensor(step, device=device)
        self.first_bad_step = torch.tensor(-1, device=device)
        self.first_bad_loss = torch.tensor(0.0, device=device)

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        if not self.names:
            self.names = list(metrics)
        values = torch.stack([metrics[k].detach().float() for k in self.names])
        self.sums = values if self.sums is None else self.sums + values
        self.count += 1
        self.step += 1
        loss = metrics["loss"].detach().float()
        bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.step, self.first_bad_step)
        self.first_bad_loss = torch.where(bad, loss, self.first_bad_loss)

    def check_finite(self, checkpoint: Path) -> None:
        step = int(self.first_bad_step.item())
        if step >= 0:
            raise NonFiniteLoss(
                f"loss became {self.first_bad_loss.item()} at step {step}; stopped. The last "
                f"good checkpoint ({checkpoint}) is kept: try a lower learning rate")

    def take(self) -> dict[str, float]:
        """Means since the last take (one device→host copy), and reset."""
        if self.sums is None:
            return {}
        means = (self.sums / self.count).tolist()
        self.sums, self.count = None, 0
        return dict(zip(self.names, means, strict=True))


def _prepare_resume(cfg: RunConfig, ckpt_file: Path) -> dict:
    if not ckpt_file.exists():
        raise UserError(f"--resume: no checkpoint in {ckpt_file.parent}")
    payload = load_checkpoint(ckpt_file, "cpu")
    for key in ("run_config", "prefetch", "rng"):
        if key not in payload:
            raise UserError(f"{ckpt_file} is not a training run's checkpoint: it lacks a valid "
                            f"{key} (nothing to resume)")
    saved = RunConfig.from_dict(payload["run_config"], f"{ckpt_file} run_config")
    diff = resume_differences(saved, cfg)
    if diff:
        raise UserError(f"--resume: options differ from the run's config ({', '.join(diff)})")
    if cfg.steps < payload["step"]:
        raise UserError(f"--resume: the run is at step {payload['step']}; --steps "
                        f"{cfg.steps} would go back")
    return payload


def train(cfg: RunConfig, resume: bool = False, evaluate_fn: EvalFn | None = None,
          progress: bool = True, stop_after: int | None = None,
          wandb: WandbOptions | None = None, callbacks: Sequence[Callback] = ()) -> dict:
    """Run (or resume) training; returns a summary dict. ``stop_after``: stop (with a checkpoint)
    after that many steps in this call, as an interrupt would — used to test resumption.
    ``progress``: a live bar allowed (else plain lines; ``scaledql.progress``); ``wandb``: also
    log to Weights & Biases; ``callbacks``: each called with every row written to
    the run's metrics log (in the main process), right after it is written."""
    cfg.validate()
    run = Path(cfg.out)
    # The data's checks, what its arrays hold included, before the run folder exists
    dataset = open_dataset(Path(cfg.data), cfg.games, contents=True)
    if cfg.validation > 0:
        for game in cfg.games or dataset.games:
            if fraction_of(dataset.game(game), cfg.episodes("heldout"))["episodes"] == 0:
                raise UserError(f"game {game}: the heldout part of its episodes is empty (too "
                                f"few episodes for --validation {cfg.validation:g})")
    dist, device = init_distributed(cfg.device)
    if dist.is_main:
        with exclusive_lock(run, "training run"):
            return _train(cfg, dist, device, resume, evaluate_fn, progress, stop_after, wandb,
                          callbacks)
    return _train(cfg, dist, device, resume, evaluate_fn, progress, stop_after, wandb, callbacks)


def _train(cfg: RunConfig, dist: Dist, device: torch.device, resume: bool,
           evaluate_fn: EvalFn | None, progress: bool, stop_after: int | None,
           wandb: WandbOptions | None = None, callbacks: Sequence[Callback] = ()) -> dict:
    run = Path(cfg.out)
    ckpt_file = checkpoint_file(run)
    payload = _prepare_resume(cfg, ckpt_file) if resume else None
    if payload is None and ckpt_file.exists():
        raise UserError(f"{run} already holds a run; pass --resume to continue it or choose "
                        "another --out")

    dataset = open_dataset(Path(cfg.data), cfg.games)
    games = list(cfg.games or dataset.games)
    data = [dataset.game(g) for g in games]
    problem = Problem.of(data, where=str(cfg.data))
    suite = data[0].suite
    env_options = data[0].env_options
    identity = data_identity(data)
    if payload is not None and payload.get("data_identity", identity) != identity:
        raise UserError(f"--resume: the data in {cfg.data} is not the data this run trained on "
                        "(its games' manifests differ)")

    seed_everything(cfg.seed)
    learner: Learner = learner_class(cfg.algo)(cfg.learner, problem, device,
                                               distributed=dist.active)
    spec = learner.batch_spec()
    if spec.batch_size % dist.world_size:
        raise UserError(f"batch size {spec.batch_size} is not divisible by the "
                        f"{dist.world_size} processes")
    if payload is not None:
        load_learner_state(learner, payload["learner"], ckpt_file)
        set_rng_state(payload["rng"])
    elif cfg.init_from:
        from scaledql.transfer import transfer_torso

        transfer_torso(learner, Path(cfg.init_from), cfg.init_parts, cfg.freeze_encoder,
                       verbose=dist.is_main)
    if cfg.freeze_encoder:
        learner.freeze_encoder()

    workers = cfg.sample_workers if cfg.sample_workers is not None else int(device.type == "cuda")
    # --resident-gb is per process: each sampling thread's sampler holds its share
    pool = None if cfg.resident_gb is None else PoolOptions(
        int(cfg.resident_gb * 1e9) // max(1, workers), rotate_every=cfg.rotate_every,
        rotate_share=cfg.rotate_share)

    def make(worker: int):
        seq = np.random.SeedSequence([cfg.seed, dist.rank, worker])
        return make_sampler(dataset, games, spec, spec.batch_size // dist.world_size, seq,
                            pool=pool, episodes=cfg.episodes())

    prefetcher = Prefetcher(make, device, workers=workers, depth=cfg.prefetch,
                            states=payload["prefetch"][dist.rank] if payload else None)
    start = learner.step
    counts = learner.param_counts()
    log = MetricsLog(run, dist.is_main, start, wandb=wandb)

    def write(row: dict, kind: str = "train") -> None:
        log.write(row, kind=kind)
        if dist.is_main:
            for callback in callbacks:
                callback({"kind": kind, **row})

    if dist.is_main:
        write_config(run, cfg.to_dict())
        write_params(run, counts)
        machine = machine_record(device)
        record_machine(run, machine, precision=learner.precision, from_step=start)
        kept = {g: fraction_of(d, cfg.episodes()) for g, d in zip(games, data, strict=True)}
        budget = run_budget(cfg.to_dict(), {g: k["transitions"] for g, k in kept.items()})
        write_budget(run, budget)
        log.write_config(cfg.to_dict(), counts)
        parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "total")
        print(f"[train] {cfg.algo} on {len(games)} games, obs {problem.obs_shape}: "
              f"{counts['total']:,} parameters ({parts}); "
              f"device {device} ({learner.precision}; {machine['cpu']}); {dist.world_size} "
              f"process(es), {workers} sampling thread(s)", file=sys.stderr)
        if cfg.data_fraction < 1 or cfg.validation > 0:
            which = "first" if cfg.data_sample == "first" else "a uniform sample of"
            held = f", {cfg.validation:g} of them held out" if cfg.validation > 0 else ""
            print(f"[train] data fraction {cfg.data_fraction:g}{held}: trains on " + "; ".join(
                f"{g} {k['transitions']:,} of {k['total_transitions']:,} transitions ({which} "
                f"{k['episodes']} of {k['total_episodes']} episodes)" for g, k in kept.items()),
                file=sys.stderr)
        print(f"[train] budget: {budget_line(budget)}", file=sys.stderr)

    def save() -> None:
        states = gather(prefetcher.state_dict(), dist)
        if dist.is_main:
            save_checkpoint({**learner_payload(learner, suite, env_options),
                             "run_config": cfg.to_dict(), "prefetch": states,
                             "rng": rng_state(), "data_identity": identity}, ckpt_file)
            if kept(learner.step):
                keep_copy(ckpt_file, learner.step)

    def kept(step: int) -> bool:  # a step whose checkpoint --keep-every keeps for good
        return cfg.keep_every > 0 and step > 0 and step % cfg.keep_every == 0

    probe: list = []  # the fixed states srank and DR3 are measured on, drawn at the first use
    validation = ValidationProbe(dataset, games, spec, cfg, pool)
    last_eval: list[dict] = []  # this call's latest evaluation row (the summary returns it)

    def representation() -> dict:
        if not cfg.diagnostics:
            return {}
        if not probe:
            # Its own seed stream: drawing it leaves the training batches as they were.
            probe_pool = None if pool is None else PoolOptions(
                min(pool.resident_bytes, 256 * 2**20), rotate_every=cfg.rotate_every,
                rotate_share=cfg.rotate_share)
            sampler = make_sampler(dataset, games, BatchSpec("transitions", PROBE_SIZE),
                                   PROBE_SIZE, np.random.SeedSequence([cfg.seed, 2**32 - 1]),
                                   pool=probe_pool, episodes=cfg.episodes())
            batch = sampler.sample()
            probe.extend(torch.from_numpy(np.ascontiguousarray(x))
                         for x in (batch.obs, batch.next_obs, batch.game_id))
        return representation_metrics(learner, *probe)

    def run_eval() -> None:
        if evaluate_fn is None or not dist.is_main:
            return
        if any(r["step"] == learner.step for r in log.rows("eval")):
            return  # a resumed, finished run: this evaluation is already logged
        row = {"step": learner.step, **evaluate_fn(learner.policy(), games, learner.step),
               **representation(), **validation.losses(learner)}
        write(row, kind="eval")
        last_eval[:] = [row]

    bar = ProgressBar(cfg.steps, f"train {cfg.algo}", "step", initial=start, bar=progress,
                      enabled=dist.is_main)
    window = _DeviceWindow(device, start)
    interrupted = False
    t0, steps_in_window = time.perf_counter(), 0
    # Ctrl-C or a scheduler's SIGTERM: save and leave; during an update, once it has finished
    # (an exact resume).
    signals = StopSignals(interrupt_when_idle=True, enabled=dist.is_main)
    try:
        with signals:
            try:
                while learner.step < cfg.steps and not signals.requested:
                    if stop_after is not None and learner.step - start >= stop_after:
                        break
                    signals.busy = True
                    logged = crossed(learner.step, learner.step + 1, cfg.log_every)
                    update_probe = UpdateProbe(learner) if logged and cfg.diagnostics else None
                    window.add(learner.update(prefetcher.next()))
                    signals.busy = False
                    steps_in_window += 1
                    bar.update(1)
                    step = learner.step
                    due = crossed(step - 1, step, cfg.checkpoint_every) or kept(step)
                    if logged or due:
                        window.check_finite(ckpt_file)
                    if logged:
                        seconds = time.perf_counter() - t0
                        row = {"step": step, **window.take(),
                               **(update_probe.after() if update_probe is not None else {}),
                               "steps_per_second": steps_in_window / seconds,
                               "samples_per_second": steps_in_window * spec.batch_size / seconds}
                        write(row)
                        bar.set_postfix(loss=f"{row['loss']:.3f}",
                                        sps=f"{row['steps_per_second']:.1f}", refresh=False)
                        t0, steps_in_window = time.perf_counter(), 0
                    if due:
                        save()
                    if crossed(step - 1, step, cfg.eval_every) and step < cfg.steps:
                        run_eval()
                interrupted = signals.requested
            except KeyboardInterrupt:
                interrupted = True
            finally:
                bar.close(last_line=sys.exc_info()[0] is None)  # a failure's line is its error
                prefetcher.close()
        window.check_finite(ckpt_file)
        save()
        if interrupted or learner.step < cfg.steps:
            if interrupted and dist.is_main:
                print(f"[train] interrupted at step {learner.step}; checkpoint saved to "
                      f"{ckpt_file}; continue with --resume", file=sys.stderr)
            return {"step": learner.step, "interrupted": interrupted, "run": str(run)}
        run_eval()
        if not last_eval:  # a finished run resumed: its final evaluation is already logged
            last_eval[:] = [r for r in log.rows("eval") if r["step"] == learner.step][-1:]
        return {"step": learner.step, "interrupted": False, "run": str(run), "games": games,
                "param_counts": counts, "rank": dist.rank,
                "evaluation": last_eval[0] if last_eval else None}
    finally:
        log.close()
        if not interrupted:
            shutdown(dist)
