"""Run configuration: a typed dataclass, suite presets, TOML layering, validation, printing.

One run is ``RunConfig`` (saved as ``RUN/config.json``); its ``learner`` is the typed config of
the chosen learner (``--algo``). Layers, later ones winning, key by key:

1. the learner's dataclass defaults;
2. the suite's preset (``configs/<suite>.toml``): top-level run keys, and per-learner tables
   ``[learner.<algo>]``;
3. a user TOML (``--config FILE``) of the same shape — top-level run keys, ``[learner]`` for the
   chosen learner's options, optionally ``[learner.<algo>]`` tables for several learners;
4. command-line flags.

A file that sets one key changes that key only. An unknown key or a value of the wrong type is
one ``UserError`` naming the key (with the closest known key when there is one).
``to_toml`` prints the merged configuration in the same shape, so ``--print-config > my.toml``
gives a file that ``--config my.toml`` reproduces.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaledql.agents.configs import LearnerConfig
from scaledql.agents.registry import learner_config_class, learner_names
from scaledql.data.store.episodes import EpisodeSelection
from scaledql.errors import UserError
from scaledql.training.lifecycle import resume_conflicts
from scaledql.typed_fields import typed

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"
TRANSFER_PARTS = ("encoder", "torso", "network")


@dataclass
class RunConfig:
    """One training run of any learner (saved as ``RUN/config.json``)."""

    data: str
    out: str
    algo: str = "scaled-ql"
    games: list[str] | None = None  # default: every game in the dataset
    # Share of each game's data used: its first episodes in time order, whole, as few as hold
    # at least this share of its transitions (>= 1 episode); see data/sampling/sampler.py.
    data_fraction: float = 1.0
    # "first": that share is the first episodes (above); "uniform": episodes drawn uniformly over
    # the whole run (seeded by split_seed) until they hold it.
    data_sample: str = "first"
    # Share of each game's (kept) episodes held out as a validation split, seeded by split_seed
    # (the same split for every run seed): never trained on; the TD and CQL losses on them are
    # logged at each evaluation beside those on training batches (docs/diagnostics.md).
    validation: float = 0.0
    split_seed: int = 0
    steps: int = 20_000  # gradient steps
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 1_000
    # 0: keep only the latest checkpoint; K: also a permanent RUN/checkpoints/step_N.pt every K
    # steps (learning curves re-evaluated later, fine-tuning from an earlier step).
    keep_every: int = 0
    eval_every: int = 0  # 0: evaluate only at the end
    eval_episodes: int = 10
    final_eval_episodes: int | None = None  # the last evaluation's episodes (None: eval_episodes)
    eval_epsilon: float = 0.001
    device: str = "auto"
    # Background sampling threads; None: 1 on CUDA (the GPU would wait for the sampler), 0 on a
    # CPU (a sampling thread competes with the update's threads: 78% vs 96% of the update-only
    # rate for the Atari Nature CNN on 2 cores, benchmarks/README.md).
    sample_workers: int | None = None
    prefetch: int = 2  # batches each worker keeps ready
    # Sample from a bounded pool of decoded blocks in RAM (GB per process, split over its
    # sampling threads), rotated every rotate_every batches by rotate_share of each game's
    # blocks; None: memory-map everything (raw stores only). Needed for compressed stores;
    # data/sampling/block_pool.py says how it changes the sampling distribution.
    resident_gb: float | None = None
    rotate_every: int = 1000
    rotate_share: float = 0.25
    init_from: str | None = None  # a run (or checkpoint) whose torso initialises this network
    # what transfers: "encoder" (the paper), the "torso" (and projection), or the whole
    # "network" (torso and the heads of games the source played: transfer.py)
    init_parts: str = "encoder"
    freeze_encoder: bool = False  # keep the (transferred) encoder fixed
    # Learning diagnostics (training/diagnostics.py): optimizer and representation metrics.
    diagnostics: bool = True
    learner: LearnerConfig = field(default_factory=LearnerConfig)

    def validate(self) -> RunConfig:
        learner_config_class(self.algo)  # unknown names fail here
        for name in ("steps", "log_every", "checkpoint_every", "eval_episodes", "prefetch"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        if self.final_eval_episodes is not None and self.final_eval_episodes <= 0:
            raise UserError(f"final_eval_episodes must be positive, got {self.final_eval_episodes}")
        if self.eval_every < 0 or (self.sample_workers or 0) < 0 or self.seed < 0:
            raise UserError("eval_every, sample_workers and seed must be >= 0")
        if self.keep_every < 0:
            raise UserError(f"keep_every must be >= 0 (0: latest checkpoint only), got "
                            f"{self.keep_every}")
        if not (math.isfinite(self.eval_epsilon) and 0 <= self.eval_epsilon <= 1):
            raise UserError(f"eval_epsilon must be in [0, 1], got {self.eval_epsilon}")
        if not (math.isfinite(self.data_fraction) and 0 < self.data_fraction <= 1):
            raise UserError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        self.episodes()  # data_sample, validation and split_seed checked there
        if self.resident_gb is not None and not (math.isfinite(self.resident_gb)
                                                 and self.resident_gb > 0):
            raise UserError(f"resident_gb must be positive (or unset), got {self.resident_gb}")
        if self.rotate_every < 1 or not (math.isfinite(self.rotate_share)
                                         and 0 < self.rotate_share <= 1):
            raise UserError(f"rotate_every must be >= 1 and rotate_share in (0, 1], got "
                            f"{self.rotate_every} and {self.rotate_share}")
        if self.init_parts not in TRANSFER_PARTS:
            raise UserError(f"init_parts must be one of {', '.join(TRANSFER_PARTS)}, "
                            f"got {self.init_parts!r}")
        if self.games is not None and not self.games:
            raise UserError("games is empty (leave it out to train on every game of the data)")
        self.learner.validate()
        return self

    def episodes(self, part: str = "train") -> EpisodeSelection:
        """The episodes of each game a sampler of this run draws: ``part`` "train" (what the
        run learns from), "heldout" (its validation split) or "all"."""
        return EpisodeSelection(self.data_fraction, self.data_sample, self.validation,
                                self.split_seed, part).validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> RunConfig:
        """A saved or merged dict (``learner`` as a dict) → a typed, unvalidated config."""
        d = dict(d)
        algo = d.get("algo", "scaled-ql")
        if not isinstance(algo, str):
            raise UserError(f"{where}: algo must be a string, got {algo!r}")
        learner_cls = learner_config_class(algo)
        learner = learner_cls(**typed(learner_cls, d.pop("learner", {}) or {}, f"{where} [learner]"))
        run = typed(cls, d, where, skip=("learner",))
        return cls(learner=learner, **run)


# -- TOML files and layering ---------------------------------------------------------------
def read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None


def preset_path(name: str) -> Path:
    """``minatar``/``atari`` → the packaged preset; anything else is a path."""
    packaged = PRESETS_DIR / f"{name}.toml"
    return packaged if packaged.is_file() else Path(name)


def suite_preset(suite: str) -> dict[str, Any]:
    """A suite's preset layer: the packaged ``configs/<suite>.toml`` of a built-in suite, a
    registered suite's ``preset`` (a dict of the same shape, or a TOML path), else none."""
    packaged = PRESETS_DIR / f"{suite}.toml"
    if packaged.is_file():
        return read_toml(packaged)
    from scaledql.suites import get_suite

    preset = getattr(get_suite(suite), "preset", None)
    if isinstance(preset, (str, Path)):
        return read_toml(Path(preset))
    return dict(preset or {})


def _layer(algo: str, layer: dict[str, Any], where: str) -> tuple[dict, dict]:
    """One file → (run keys, learner keys for ``algo``)."""
    layer = dict(layer)
    if "agent" in layer:
        raise UserError(f"{where}: the [agent] table is now [learner]")
    learner = layer.pop("learner", {})
    if not isinstance(learner, dict):
        raise UserError(f"{where}: learner must be a table")
    tables = {k: v for k, v in learner.items() if isinstance(v, dict)}  # [learner.<algo>]
    unknown = set(tables) - set(learner_names())
    if unknown:
        raise UserError(f"{where}: [learner.{sorted(unknown)[0]}] names no registered learner "
                        f"({', '.join(learner_names())})")
    common = {k: v for k, v in learner.items() if k not in tables}
    specific = tables.get(algo, {})
    return layer, {**common, **specific}


def preset_layers(suite: str, algo: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a suite's packaged preset sets: (run keys, learner keys of ``algo``)."""
    return _layer(algo, read_toml(preset_path(suite)), f"preset {suite}")


def merge(algo: str, preset: dict[str, Any], user: dict[str, Any] | None,
          run_overrides: dict[str, Any], learner_overrides: dict[str, Any],
          preset_name: str = "preset", user_name: str = "config") -> RunConfig:
    """Layer preset → user file → flags for learner ``algo``; returns a validated RunConfig."""
    config_class = learner_config_class(algo)
    run, learner = {}, {}
    for layer, where in ((preset, preset_name), (user or {}, user_name)):
        r, lr = _layer(algo, layer, where)
        typed(RunConfig, r, where, skip=("learner",))
        typed(config_class, lr, f"{where} [learner] ({algo})")
        run.update(r)
        learner.update(lr)
    run.update(run_overrides)
    learner.update(learner_overrides)
    run["algo"] = algo
    return RunConfig.from_dict({**run, "learner": learner}).validate()


# -- printing ----------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else
                                                         ("inf" if value > 0 else "-inf"))
    return json.dumps(value)


def to_toml(cfg: RunConfig) -> str:
    """The merged config as TOML that ``--config`` reads back (None is written ``"none"``)."""
    d = cfg.to_dict()
    learner = d.pop("learner")
    lines = [f"# scaledql run configuration (learner {cfg.algo})"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in d.items()]
    lines += ["", "[learner]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in learner.items()]
    return "\n".join(lines) + "\n"


# Options a resumed run may change; any other difference is refused. The data may move: the
# loop compares its content (``data.store.data_identity``), not its path.
CHANGEABLE_ON_RESUME = ("out", "data", "steps", "log_every", "checkpoint_every", "keep_every",
                        "eval_every", "eval_episodes", "final_eval_episodes", "device", "prefetch",
                        "diagnostics")


def resume_differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    """Options (``learner.x`` for learner options) that differ between two configs and may
    not change on resume (the run folder and the data may move)."""
    def flat(cfg: RunConfig) -> dict[str, Any]:
        d = cfg.to_dict()
        out = {k: v for k, v in d.items() if k != "learner"}
        out.update({f"learner.{k}": v for k, v in d["learner"].items()})
        return out

    return resume_conflicts(flat(saved), flat(wanted), CHANGEABLE_ON_RESUME)


def parse_toml_value(text: str, where: str) -> Any:
    """One TOML value (``3``, ``1e-3``, ``true``, ``"nature"``, ``["a", "b"]``); a bare word is
    taken as a string."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text and all(c.isalnum() or c in "-_./" for c in text):
            return text
        raise UserError(f"{where}: {text!r} is not a TOML value") from None
