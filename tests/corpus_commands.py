"""Corpus: bad options, configs, checkpoints and run folders for train / collect / evaluate /
report / demo / suites. Each command line is a valid baseline (``test_hardening`` runs the
baselines) followed by the one bad thing: the last value of an option wins."""

from __future__ import annotations

import json

import torch

from corpus_setup import Case, Ctx, case, edit_json, write

TRAIN = ["train", "--data", "{store}", "--out", "{tmp}/newrun", "--steps", "2", "--encoder",
         "nature", "--width", "0.25", "--feature-dim", "8", "--batch-size", "4",
         "--eval-every", "0", "--eval-episodes", "1", "--no-progress", "--device", "cpu"]
RESUME = ["train", "--out", "{run}", "--resume", "--steps", "3", "--eval-every", "0",
          "--no-progress", "--device", "cpu"]
COLLECT = ["collect", "--games", "breakout", "--steps", "40", "--out", "{tmp}/col",
           "--num-envs", "1", "--dqn-learning-starts", "8", "--dqn-batch-size", "4",
           "--dqn-width", "0.25", "--dqn-feature-dim", "8", "--no-progress", "--device", "cpu"]
EVAL = ["evaluate", "--policy", "random", "--games", "breakout", "--episodes", "1",
        "--max-episode-steps", "20", "--num-envs", "1", "--no-progress", "--device", "cpu"]
EVAL_CKPT = ["evaluate", "--checkpoint", "{run}", "--games", "breakout", "--episodes", "1",
             "--max-episode-steps", "20", "--num-envs", "1", "--no-progress", "--device", "cpu"]
BASELINES = {"train": TRAIN, "resume": RESUME, "collect": COLLECT, "evaluate": EVAL,
             "evaluate-checkpoint": EVAL_CKPT}

FLOAT = r"not a finite number|must be (finite|positive|> ?0|>= ?0|in)"


def toml(text: str | bytes):
    return lambda c: write(c.tmp / "c.toml", text)


def cfg_json(fn):
    return lambda c: edit_json(c.run() / "config.json", fn)


def ckpt(fn):
    """Load the run's checkpoint, change it in place with ``fn``, save it back."""
    def setup(ctx: Ctx) -> None:
        path = ctx.run() / "checkpoint.pt"
        payload = torch.load(path, weights_only=True)
        fn(payload)
        torch.save(payload, path)
    return setup


def ckpt_replace(obj: object):
    return lambda c: torch.save(obj, c.run() / "checkpoint.pt")


def first_weight(payload: dict) -> torch.Tensor:
    return next(v for v in payload["learner"]["online"].values() if v.is_floating_point())


def poison(value: float):
    def fn(payload: dict) -> None:
        first_weight(payload).view(-1)[0] = value
    return fn


class _Trap:
    def __reduce__(self):
        return (print, ("pickle ran",))


def collection_ckpt(ctx: Ctx) -> None:
    import shutil

    shutil.copyfile(ctx.assets.collect_ckpt, ctx.run() / "checkpoint.pt")


CASES: list[Case] = []
for flag, value, expect in [
    ("--steps", "abc", r"--steps: invalid int"), ("--steps", "5.5", r"--steps: invalid int"),
    ("--steps", "0", r"steps must be positive"), ("--steps", "-3", r"steps must be positive"),
    ("--seed", "-1", r"seed must be >= 0"), ("--lr", "nan", r"--lr.*finite"),
    ("--lr", "inf", r"--lr.*finite"), ("--lr", "-1", r"lr.*must be > 0"),
    ("--lr", "1e999", r"--lr.*finite"), ("--reward-clip", "nan", r"--reward-clip.*finite"),
    ("--reward-clip", "-1", r"reward_clip must be"), ("--cql-alpha", "nan", r"--cql-alpha.*finite"),
    ("--cql-alpha", "-0.5", r"cql_alpha must be"), ("--width", "0", r"width must be > 0"),
    ("--width", "nan", r"--width.*finite"), ("--grad-clip", "nan", r"--grad-clip.*finite"),
    ("--grad-clip", "-1", r"grad_clip must be"), ("--batch-size", "0", r"batch_size must be"),
    ("--batch-size", "100000000000", r"batch.*(memory|too large|at most)"),
    ("--n-step", "0", r"n_step must be"), ("--target-update-period", "0",
                                            r"target_update_period must be"),
    ("--log-every", "0", r"log_every must be positive"),
    ("--checkpoint-every", "0", r"checkpoint_every must be positive"),
    ("--eval-every", "-1", r"eval_every.* must be >= 0"),
    ("--eval-episodes", "0", r"eval_episodes must be positive"),
    ("--sample-workers", "-1", r"sample_workers.* must be >= 0"),
    ("--prefetch", "0", r"prefetch must be positive"), ("--games", ",", r"games is empty"),
    ("--resident-gb", "nan", FLOAT), ("--resident-gb", "0", r"resident_gb must be positive"),
    ("--resident-gb", "1e-9", r"largest block needs"),
    ("--rotate-every", "0", r"rotate_every must be >= 1"),
    ("--rotate-share", "1.5", r"rotate_share in \(0, 1\]"),
    ("--games", "", r"games is empty"), ("--games", "frobnicate", r"no complete game store for frobnicate"),
    ("--games", "breakout,breakout", r"lists breakout twice"), ("--encoder", "nosuch", r"unknown encoder 'nosuch'"),
    ("--feature-dim", "0", r"feature_dim must be > 0"), ("--loss", "huber", r"invalid choice"),
    ("--algo", "nosuch", r"invalid choice"), ("--init-parts", "all", r"invalid choice"),
    ("--device", "nosuch", r"unknown device 'nosuch'"),
    ("--set", "seed=5.5", r"seed must be int"), ("--set", "steps", r"expected KEY=VALUE"),
    ("--set", "=3", r"expected KEY=VALUE"), ("--set", "nokey=1", r"unknown key 'nokey'"),
    ("--set", "learner.nokey=1", r"unknown key 'nokey'"),
    ("--set", "learner.lr='fast'", r"lr must be float"), ("--set", "steps=[1", r"--set steps"),
    ("--set", "learner.lr=nan", r"lr.* must be finite"), ("--set", "seed=-4", r"seed must be"),
    ("--set", "eval_epsilon=2.0", r"eval_epsilon must be in \[0, 1\]"),
    ("--data", "{tmp}/nowhere", r"does not exist"), ("--out", "{tmp}/f", r"--out .*f is not a directory"),
    ("--out", "{ro}/run", r"scaledql-corpus|ro/run"),
    ("--init-from", "{tmp}/nowhere", r"nowhere does not exist"),
    ("--init-from", "{tmp}", r"checkpoint\.pt does not exist"),
    ("--config", "{tmp}/missing.toml", r"missing\.toml"),
]:
    CASES.append(case(f"train{flag}={value}", [*TRAIN, flag, value], expect,
                      (lambda c: write(c.tmp / "f", "x")) if value == "{tmp}/f" else None))

for name, text, expect in [
    ("syntax", "steps = = 3", r"c\.toml: not valid TOML"),
    ("non-utf8", b"steps = 3\n\xff\xfe", r"c\.toml: not UTF-8"),
    ("unknown-key", "stepz = 3", r"unknown key 'stepz'"), ("wrong-type", 'steps = "x"',
                                                           r"steps must be int"),
    ("steps-5.5", "steps = 5.5", r"steps must be int"),
    ("lr-nan", "[learner]\nlr = nan", r"lr.* must be finite"),
    ("lr-inf", "[learner]\nlr = inf", r"lr.* must be finite"),
    ("learner-not-table", "learner = 3", r"learner must be a table"),
    ("unknown-learner-key", "[learner]\nlrr = 0.1", r"unknown key 'lrr'"),
    ("games-string", 'games = "breakout"', r"games must be list"),
    ("seed-negative", "seed = -1", r"seed must be >= 0"),
]:
    CASES.append(case(f"train-config-{name}", [*TRAIN, "--config", "{tmp}/c.toml"], expect,
                      toml(text)))

CASES += [
    case("train-data-missing-flag", TRAIN[:1] + TRAIN[3:], r"--data is required"),
    case("train-data-a-file", [*TRAIN, "--data", "{tmp}/f"], r"f is not a directory",
         lambda c: write(c.tmp / "f", "x")),
    case("train-data-empty-dir", [*TRAIN, "--data", "{tmp}/e"], r"holds no game stores",
         lambda c: (c.tmp / "e").mkdir()),
    case("train-out-holds-a-run", [*TRAIN, "--out", "{run}"], r"already holds a run"),
    case("resume-no-run", [*RESUME, "--out", "{tmp}/e"], r"holds no run",
         lambda c: (c.tmp / "e").mkdir()),
    case("resume-config-not-json", RESUME, r"config\.json: not valid JSON",
         lambda c: write(c.run() / "config.json", "{nope")),
    case("resume-config-list", RESUME, r"config\.json: not a run configuration",
         lambda c: write(c.run() / "config.json", "[]")),
    case("resume-config-non-utf8", RESUME, r"config\.json: not valid JSON",
         lambda c: write(c.run() / "config.json", b"\xff\xfe")),
    case("resume-config-seed-string", RESUME, r"seed must be int",
         cfg_json(lambda d: d.__setitem__("seed", "x"))),
    case("resume-config-learner-list", RESUME, r"learner must be a table",
         cfg_json(lambda d: d.__setitem__("learner", [1]))),
    case("resume-config-unknown-key", RESUME, r"unknown key 'bogus'",
         cfg_json(lambda d: d.__setitem__("bogus", 1))),
    case("resume-config-data-missing", RESUME, r"does not exist",
         cfg_json(lambda d: d.__setitem__("data", "/nonexistent/store"))),
    case("resume-collection-checkpoint", RESUME, r"not a training run's checkpoint",
         collection_ckpt),
    case("resume-checkpoint-garbage", RESUME, r"not a scaledql checkpoint",
         lambda c: write(c.run() / "checkpoint.pt", b"garbage" * 10)),
    case("resume-checkpoint-no-marker", RESUME, r"no scaledql format marker",
         ckpt_replace({"a": torch.zeros(1)})),
    case("resume-checkpoint-nan", RESUME, r"non-finite", ckpt(poison(float("nan")))),
    case("resume-checkpoint-missing", RESUME, r"no checkpoint",
         lambda c: (c.run() / "checkpoint.pt").unlink()),
    case("resume-checkpoint-no-rng", RESUME, r"lacks a valid rng", ckpt(lambda p: p.pop("rng"))),
    case("resume-checkpoint-no-prefetch", RESUME, r"lacks a valid prefetch",
         ckpt(lambda p: p.pop("prefetch"))),
    case("resume-checkpoint-wrong-weights", RESUME, r"weights do not fit .*Missing key",
         ckpt(lambda p: p["learner"]["online"].popitem())),
    case("resume-run-in-use", RESUME, r"run is in use by process \d+",
         lambda c: c.hold(c.run() / ".lock")),
    case("train-run-in-use", [*TRAIN, "--out", "{tmp}/newrun"], r"newrun is in use by process",
         lambda c: c.hold(c.tmp / "newrun" / ".lock")),
    case("resume-steps-back", [*RESUME, "--steps", "1"], r"would go back"),
    case("resume-changed-lr", [*RESUME, "--lr", "0.5"], r"options differ"),
]

for flag, value, expect in [
    ("--steps", "0", r"--steps must be positive"), ("--steps", "-5", r"--steps must be positive"),
    ("--steps", "5.5", r"invalid int"), ("--num-envs", "0", r"--num-envs must be positive"),
    ("--epsilon", "nan", r"--epsilon.*finite"), ("--epsilon", "1.5", r"--epsilon must be in"),
    ("--epsilon", "-0.1", r"--epsilon must be in"), ("--epsilon", "inf", r"--epsilon.*finite"),
    ("--seed", "-1", r"--seed must be >= 0"),
    ("--dqn-update-period", "0", r"update-period must be >= 1"),
    ("--dqn-replay-capacity", "0", r"replay-capacity must be >= 1"),
    ("--dqn-epsilon-start", "nan", r"--dqn-epsilon-start.*finite"),
    ("--dqn-epsilon-start", "2", r"epsilon-start must be in \[0, 1\]"),
    ("--dqn-epsilon-end", "-1", r"epsilon-end must be in \[0, 1\]"),
    ("--dqn-epsilon-decay-steps", "0", r"epsilon-decay-steps must be >= 1"),
    ("--dqn-learning-starts", "-1", r"learning-starts must be >= 0"),
    ("--dqn-lr", "nan", r"--dqn-lr.*finite"), ("--dqn-lr", "0", r"lr.* must be > 0"),
    ("--dqn-gamma", "1.5", r"gamma must be in \[0, 1\]"), ("--dqn-gamma", "nan", r"--dqn-gamma.*finite"),
    ("--dqn-reward-clip", "nan", r"--dqn-reward-clip.*finite"),
    ("--dqn-reward-clip", "-1", r"reward_clip must be"),
    ("--dqn-batch-size", "0", r"batch_size must be"),
    ("--dqn-batch-size", "100000000000", r"batch.*(memory|too large|at most)"),
    ("--dqn-width", "0", r"width must be > 0"), ("--dqn-encoder", "nosuch", r"unknown encoder 'nosuch'"),
    ("--dqn-target-update-period", "0", r"target_update_period must be"),
    ("--dqn-adam-eps", "0", r"adam_eps must be > 0"),
    ("--dqn-feature-dim", "0", r"feature_dim must be > 0"),
    ("--sticky", "nan", r"--sticky.*finite"), ("--sticky", "1.5", r"--sticky must be in"),
    ("--max-episode-steps", "0", r"--max-episode-steps must be positive"),
    ("--games", ",", r"no games"), ("--games", "", r"no games"),
    ("--games", "frobnicate", r"unknown minatar game 'frobnicate'"),
    ("--suite", "nosuch", r"unknown suite 'nosuch'"),
    ("--mode", "1", r"--mode/--difficulty apply to the atari suite only"),
    ("--policy", "{tmp}/missing.pt", r"no such checkpoint"),
    ("--policy", "{tmp}/f", r"not a scaledql checkpoint"),
    ("--policy", "{tmp}", r"checkpoint\.pt does not exist"),
    ("--out", "{tmp}/f", r"--out .*f is not a directory"), ("--out", "{ro}/col", r"scaledql-corpus|ro/col"),
    ("--device", "nosuch", r"unknown device"),
]:
    CASES.append(case(f"collect{flag}={value}", [*COLLECT, flag, value], expect,
                      (lambda c: write(c.tmp / "f", "x")) if value == "{tmp}/f" else None))
CASES += [
    case("collect-policy-other-games", [*COLLECT, "--games", "freeway", "--policy", "{run}"],
         r"no head for 'freeway'"),
    case("collect-full-action-space-minatar", [*COLLECT, "--full-action-space"],
         r"--full-action-space applies to the atari suite only"),
]

for flag, value, expect in [
    ("--episodes", "0", r"--episodes must be positive"),
    ("--episodes", "-1", r"--episodes must be positive"),
    ("--epsilon", "nan", r"--epsilon.*finite"), ("--epsilon", "2", r"--epsilon must be in"),
    ("--num-envs", "0", r"--num-envs must be positive"), ("--games", ",", r"no games"),
    ("--games", "", r"no games"), ("--sticky", "-1", r"--sticky must be in"),
    ("--seed", "-1", r"--seed must be >= 0"), ("--suite", "nosuch", r"unknown suite"),
    ("--max-episode-steps", "0", r"--max-episode-steps must be positive"),
    ("--out", "{tmp}/f", r"--out .*f is not a directory"), ("--device", "cuda:7", r"cuda:7"),
]:
    CASES.append(case(f"evaluate{flag}={value}", [*EVAL, flag, value], expect,
                      (lambda c: write(c.tmp / "f", "x")) if value == "{tmp}/f" else None))

CASES += [
    case("evaluate-checkpoint-missing", [*EVAL_CKPT[:2], "{tmp}/none.pt", *EVAL_CKPT[3:]],
         r"does not exist"),
    case("evaluate-checkpoint-garbage", EVAL_CKPT, r"not a scaledql checkpoint",
         lambda c: write(c.run() / "checkpoint.pt", b"\x00" * 64)),
    case("evaluate-checkpoint-empty", EVAL_CKPT, r"not a scaledql checkpoint",
         lambda c: write(c.run() / "checkpoint.pt", b"")),
    case("evaluate-checkpoint-no-marker", EVAL_CKPT, r"no scaledql format marker",
         ckpt_replace({"weights": torch.zeros(2)})),
    case("evaluate-checkpoint-version-99", EVAL_CKPT, r"version 99",
         ckpt(lambda p: p.__setitem__("version", 99))),
    case("evaluate-checkpoint-nan-weights", EVAL_CKPT, r"non-finite", ckpt(poison(float("nan")))),
    case("evaluate-checkpoint-inf-weights", EVAL_CKPT, r"non-finite", ckpt(poison(float("inf")))),
    case("evaluate-checkpoint-config-type", EVAL_CKPT, r"width must be float",
         ckpt(lambda p: p["learner_config"].__setitem__("width", "wide"))),
    case("evaluate-checkpoint-config-unknown", EVAL_CKPT, r"unknown key 'wdth'",
         ckpt(lambda p: p["learner_config"].__setitem__("wdth", 1.0))),
    case("evaluate-checkpoint-no-learner", EVAL_CKPT, r"checkpoint lacks learner",
         ckpt(lambda p: p.pop("learner"))),
    case("evaluate-checkpoint-no-algo", EVAL_CKPT, r"checkpoint lacks algo", ckpt(lambda p: p.pop("algo"))),
    case("evaluate-checkpoint-no-suite", EVAL_CKPT, r"checkpoint lacks suite", ckpt(lambda p: p.pop("suite"))),
    case("evaluate-checkpoint-algo-unknown", EVAL_CKPT, r"unknown learner 'nosuch'",
         ckpt(lambda p: p.__setitem__("algo", "nosuch"))),
    case("evaluate-checkpoint-suite-unknown", EVAL_CKPT, r"unknown suite 'nes'",
         ckpt(lambda p: p.__setitem__("suite", "nes"))),
    case("evaluate-checkpoint-games-string", EVAL_CKPT, r"games must be a list",
         ckpt(lambda p: p.__setitem__("games", "breakout"))),
    case("evaluate-checkpoint-actions-mismatch", EVAL_CKPT, r"weights do not fit",
         ckpt(lambda p: p.__setitem__("num_actions", [4, 5]))),
    case("evaluate-checkpoint-obs-shape-strings", EVAL_CKPT, r"obs_shape / frame_channels are not",
         ckpt(lambda p: p.__setitem__("obs_shape", ["a", "b"]))),
    case("evaluate-checkpoint-pickle", EVAL_CKPT, r"not a weights-only torch file",
         lambda c: torch.save({"format": "scaledql-checkpoint", "x": _Trap()},
                              c.run() / "checkpoint.pt")),
    case("evaluate-checkpoint-unknown-game", [*EVAL_CKPT, "--games", "frobnicate"],
         r"unknown minatar game 'frobnicate'"),
    case("evaluate-checkpoint-untrained-game", [*EVAL_CKPT, "--games", "freeway"],
         r"no head for 'freeway'"),
]

REPORT = ["report", "{tmp}/demo"]


def _evaluation(returns: list[float]) -> dict:
    return {"suite": "minatar", "seed": 0, "epsilon": 0.001,
            "games": {"breakout": {"returns": returns}}}


def demo_folder(ctx: Ctx) -> None:
    """The smallest folder ``report`` turns into a report (the shape ``demo`` writes)."""
    demo = ctx.tmp / "demo"
    learner = {"encoder": "nature", "width": 0.25, "feature_dim": 8, "feature_norm": True,
               "loss": "c51", "cql_alpha": 0.5, "batch_size": 4, "n_step": 3}
    summary = {"games": ["breakout"], "seed": 0, "quick": True, "wall_seconds": 60.0,
               "timings_seconds": {"collect": 30.0, "train": 30.0},
               "agent": _evaluation([1.0, 2.0]), "behaviour_dataset": _evaluation([0.0, 1.0]),
               "behaviour_last_dqn": _evaluation([1.0, 1.0]), "baselines": {},
               "train_config": {"steps": 2, "learner": learner},
               "config": {"collect_steps": 100, "eval_episodes": 2}}
    write(demo / "summary.json", json.dumps(summary))
    write(demo / "agent" / "params.json", json.dumps(
        {"total": 10, "encoder": 4, "projection": 3, "heads": 3}))
    write(demo / "agent" / "metrics.jsonl",
          json.dumps({"step": 1, "td_loss": 1.0, "cql_loss": 0.5}) + "\n")
    write(demo / "agent" / "eval" / "step_00000002.json",
          json.dumps({"aggregate": {"iqm": 0.1, "iqm_ci": [0.0, 0.2]}}))


def demo_damaged(fn):
    def setup(ctx: Ctx) -> None:
        demo_folder(ctx)
        fn(ctx.tmp / "demo")
    return setup


def summary_edit(fn):
    return demo_damaged(lambda d: edit_json(d / "summary.json", fn))


REPORT_RUNS = ["report", "{tmp}/runs/a", "{tmp}/runs/b", "--out", "{tmp}/rep", "--reps", "20",
               "--improvement-reps", "5"]


def eval_runs(ctx: Ctx) -> None:
    """Two finished runs (seeds 0 and 1) of one learner, as far as ``report`` reads them."""
    from conftest import write_eval_run

    for seed, name in ((0, "a"), (1, "b")):
        write_eval_run(ctx.tmp / "runs" / name, {"breakout": [1.0, 2.0], "freeway": [3.0, 0.0]},
                       seed=seed)


def runs_damaged(fn):
    def setup(ctx: Ctx) -> None:
        eval_runs(ctx)
        fn(ctx.tmp / "runs" / "b")
    return setup


def b_eval(fn):
    return runs_damaged(lambda b: edit_json(b / "eval" / "step_00000100.json", fn))


def b_config(fn):
    return runs_damaged(lambda b: edit_json(b / "config.json", fn))


def _rmtree(path) -> None:
    import shutil

    shutil.rmtree(path)


def _b_is_a(b) -> None:
    _rmtree(b)
    b.symlink_to(b.parent / "a")


REPORT_RUNS_CASES = [
    case("report-runs-missing", REPORT_RUNS, r"runs/b does not exist", runs_damaged(_rmtree)),
    case("report-runs-not-a-run", REPORT_RUNS, r"runs/b is not a run folder",
         runs_damaged(lambda b: (b / "config.json").unlink())),
    case("report-runs-config-not-json", REPORT_RUNS, r"config\.json: not valid JSON",
         runs_damaged(lambda b: write(b / "config.json", "{"))),
    case("report-runs-config-list", REPORT_RUNS, r"runs/b is not a run folder",
         runs_damaged(lambda b: write(b / "config.json", "[]"))),
    case("report-runs-seed-negative", REPORT_RUNS, r"seed must be a non-negative integer",
         b_config(lambda c: c.__setitem__("seed", -1))),
    case("report-runs-seed-string", REPORT_RUNS, r"seed must be a non-negative integer",
         b_config(lambda c: c.__setitem__("seed", "1"))),
    case("report-runs-no-eval", REPORT_RUNS, r"runs/b: no evaluation",
         runs_damaged(lambda b: _rmtree(b / "eval"))),
    case("report-runs-eval-not-json", REPORT_RUNS, r"step_00000100\.json: not valid JSON",
         runs_damaged(lambda b: write(b / "eval" / "step_00000100.json", "[1,"))),
    case("report-runs-eval-list", REPORT_RUNS, r"step_00000100\.json: not an evaluation report",
         runs_damaged(lambda b: write(b / "eval" / "step_00000100.json", "[]"))),
    case("report-runs-eval-no-suite", REPORT_RUNS, r"not an evaluation report",
         b_eval(lambda e: e.pop("suite"))),
    case("report-runs-returns-strings", REPORT_RUNS, r"breakout has no list of finite returns",
         b_eval(lambda e: e["games"]["breakout"].__setitem__("returns", ["1"]))),
    case("report-runs-returns-nan", REPORT_RUNS, r"breakout has no list of finite returns",
         b_eval(lambda e: e["games"]["breakout"].__setitem__("returns", [float("nan")]))),
    case("report-runs-returns-empty", REPORT_RUNS, r"breakout has no list of finite returns",
         b_eval(lambda e: e["games"]["breakout"].__setitem__("returns", []))),
    case("report-runs-no-reference-game", REPORT_RUNS, r"no game with reference scores \(pong\)",
         b_eval(lambda e: e.__setitem__("games", {"pong": {"returns": [1.0]}}))),
    case("report-runs-two-suites", REPORT_RUNS, r"runs from different suites",
         b_eval(lambda e: e.update(suite="atari", games={"Pong": {"returns": [1.0]}}))),
    case("report-runs-two-game-sets", REPORT_RUNS, r"scored on different games.*--common-games",
         b_eval(lambda e: e["games"].pop("freeway"))),
    case("report-runs-same-seed", REPORT_RUNS, r"both score seed 0 on breakout",
         b_config(lambda c: c.__setitem__("seed", 0))),
    case("report-runs-unfinished", REPORT_RUNS, r"step 100 of 1000 \(unfinished\)",
         b_config(lambda c: c.__setitem__("steps", 1000))),
    case("report-runs-given-twice", REPORT_RUNS, r"given twice", runs_damaged(_b_is_a)),
    case("report-runs-labels-count", [*REPORT_RUNS, "--labels", "x"],
         r"--labels: 1 label\(s\) for 2 RUN", eval_runs),
    case("report-runs-label-empty", [*REPORT_RUNS, "--labels", "x", " "],
         r"--labels: a label is empty", eval_runs),
    case("report-runs-group-by-unknown", [*REPORT_RUNS, "--group-by", "learner.depth"],
         r"no run has the option 'learner\.depth'", eval_runs),
    case("report-runs-group-by-empty", [*REPORT_RUNS, "--group-by", ","],
         r"--group-by: no option named", eval_runs),
    case("report-runs-reps-zero", [*REPORT_RUNS, "--reps", "0"], r"--reps must be positive",
         eval_runs),
    case("report-runs-seed-flag-negative", [*REPORT_RUNS, "--seed", "-1"],
         r"--seed must be in", eval_runs),
    case("report-runs-out-a-run", [*REPORT_RUNS, "--out", "{tmp}/runs/a"],
         r"holds a demo, an experiment or a run \(config\.json\)", eval_runs),
    case("report-runs-out-a-demo", [*REPORT_RUNS, "--out", "{tmp}/demo"],
         r"holds a demo, an experiment or a run \(summary\.json\)",
         lambda c: (eval_runs(c), demo_folder(c))),
    case("report-runs-out-a-file", [*REPORT_RUNS, "--out", "{tmp}/f"], r"not a directory",
         lambda c: (eval_runs(c), write(c.tmp / "f", "x"))),
]

BASELINES["report"] = REPORT
BASELINES["report-runs"] = REPORT_RUNS
CASES += [
    case("report-missing-folder", ["report", "{tmp}/nowhere"], r"nowhere does not exist"),
    case("report-no-summary", REPORT, r"not a run folder .*no summary\.json",
         demo_damaged(lambda d: (d / "summary.json").unlink())),
    case("report-summary-not-json", REPORT, r"summary\.json: not valid JSON",
         demo_damaged(lambda d: write(d / "summary.json", "{nope"))),
    case("report-summary-non-utf8", REPORT, r"summary\.json: not valid JSON",
         demo_damaged(lambda d: write(d / "summary.json", b"\xff\xfe"))),
    case("report-summary-list", REPORT, r"summary\.json: not a complete demo summary",
         demo_damaged(lambda d: write(d / "summary.json", "[1, 2]"))),
    case("report-summary-no-agent", REPORT, r"summary\.json: not a complete demo summary",
         summary_edit(lambda s: s.pop("agent"))),
    case("report-summary-returns-strings", REPORT, r"summary\.json: not a complete demo",
         summary_edit(lambda s: s["agent"]["games"]["breakout"].__setitem__("returns", ["x"]))),
    case("report-summary-games-number", REPORT, r"summary\.json: not a complete demo summary",
         summary_edit(lambda s: s.__setitem__("games", 3))),
    case("report-summary-no-train-config", REPORT, r"summary\.json: not a complete demo",
         summary_edit(lambda s: s.pop("train_config"))),
    case("report-summary-unknown-game", REPORT, r"summary\.json: not a complete demo",
         summary_edit(lambda s: s.__setitem__("games", ["pong"]))),
    case("report-no-params", REPORT, r"params\.json does not exist",
         demo_damaged(lambda d: (d / "agent" / "params.json").unlink())),
    case("report-metrics-not-json", REPORT, r"metrics\.jsonl: not valid JSON",
         demo_damaged(lambda d: write(d / "agent" / "metrics.jsonl", "{1}\n"))),
    case("report-eval-not-json", REPORT, r"step_00000002\.json: not valid JSON",
         demo_damaged(lambda d: write(d / "agent" / "eval" / "step_00000002.json", "["))),
    case("report-eval-list", REPORT, r"step_00000002\.json: not an evaluation report",
         demo_damaged(lambda d: write(d / "agent" / "eval" / "step_00000002.json", "[]"))),
    *REPORT_RUNS_CASES,
    case("demo-seed-negative", ["demo", "--quick", "--seed", "-1", "--out", "{tmp}/d"],
         r"--seed must be >= 0"),
    case("demo-out-a-file", ["demo", "--quick", "--out", "{tmp}/f"], r"not a directory",
         lambda c: write(c.tmp / "f", "x")),
    case("demo-two-sizes", ["demo", "--quick", "--full", "--out", "{tmp}/d"],
         r"--full: not allowed with argument --quick"),
    case("suites-unknown", ["suites", "--suite", "nosuch"], r"invalid choice"),
    case("no-such-command", ["frobnicate"], r"invalid choice"),
    case("data-no-action", ["data", "info"], r"arguments are required: dir"),
]
