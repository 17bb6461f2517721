"""The DQN Replay Dataset (Dopamine's logged replay buffers): layout, selection, timeline, episodes.

Source layout (``SRC/GAME/RUN/replay_logs/``), one set of files per checkpoint ``N``, each file
``gzip(np.save(array))``::

    $store$_observation_ckpt.N.gz   uint8[C, 84, 84]     C = capacity (1,000,000 in the dataset)
    $store$_action_ckpt.N.gz        int32[C]
    $store$_reward_ckpt.N.gz        float32[C]           already clipped to [-1, 1]
    $store$_terminal_ckpt.N.gz      uint8[C]
    add_count_ckpt.N.gz             int64 scalar
    invalid_range_ckpt.N.gz         (not needed)
    episode_end_indices_ckpt.N.gz   a PICKLE in newer Dopamine versions: never opened

What the import relies on (google/dopamine ``replay_memory/circular_replay_buffer.py``,
``OutOfGraphReplayBuffer``; google-research/batch_rl ``baselines/replay_memory/
logged_replay_buffer.py``, ``OutOfGraphLoggedReplayBuffer``):

* ``add(o, a, r, terminal)`` first adds ``stack_size - 1`` all-zero entries when the buffer is
  empty or the entry before the cursor is terminal, then writes ``(o_t, a_t, r_t, terminal_t)``
  at ``cursor = add_count % C`` and increments ``add_count``. The next observation of entry ``g``
  is entry ``g + 1``; the observation after a terminal entry is never stored.
* The logged buffer writes checkpoint ``N`` right after the add that makes
  ``add_count % C == C - 1``, so ``add_count = (N + 1) C - 1``: slots ``0 .. C-2`` hold adds
  ``N C .. N C + C - 2`` and the cursor slot ``C - 1`` still holds add ``N C - 1`` from the
  previous cycle — the one add checkpoint ``N - 1`` did not contain (in checkpoint 0 the slot is
  uninitialized). In general a checkpoint with ``add_count = A`` holds adds
  ``max(0, A - C) .. A - 1``, add ``g`` in slot ``g % C``; this covers wrapped buffers and
  Dopamine's ordinary checkpoints. ``log_final_buffer`` saves ``add_count`` reduced to the cursor;
  for such a file (``N > 0`` and ``A < C``) the true count is the first number at or after the
  previous file's ``add_count`` with remainder ``A`` modulo ``C``.
* The log check runs once per ``add`` call, after the padding adds: when the padding steps over
  ``C - 1`` that cycle is not logged and its adds are lost in the source. The stored add counts
  show it as a gap between two files, handled like a gap in the selection.
* So consecutive checkpoints of a run join into one timeline of adds with nothing lost; a
  selection with a gap splits it into windows. Entries that follow a terminal entry (or start
  the run) for ``stack_size - 1`` adds are padding and are dropped.
* Newer Dopamine versions also pad after an ``episode_end`` add that is not terminal (a time
  limit); that boundary is recorded only in ``episode_end_indices`` (a pickle, never read), so
  such files would join the two episodes. The DQN Replay Dataset predates it: its 27,000-step
  cap is terminal.

Episodes: every real add is a step of the behaviour policy, so an episode of ``T`` entries
becomes ``T`` transitions and ``T + 1`` frames, its entries' observations then one all-zero final
frame. The frame after the last entry was never stored (Dopamine keeps it in the agent, not the
buffer): after a terminal entry it is never used (``done`` stops the bootstrap); after an episode
cut by the end of a window it is unknown, and the zero frame says so (a sampler that bootstraps
the last step of such an episode bootstraps from a zero frame). An episode cut by a window's
end is *truncated* when a gap follows, *unfinished* at the end of a run's selection. An episode
whose start lies before the window is marked ``partial_start`` (its steps are kept; its return
is not a behaviour return). Episodes capped at 27,000 steps are terminal in the source and stay
terminated. Episodes are stored in time order: runs in the order given, then by add.

Frames are copied by ``dqn_import`` (parallel, resumable) where ``dqn_layout`` places them: this
module reads the small arrays, checks them and builds the timeline; frames never pass through
it. Nothing is ever
unpickled: arrays are parsed with ``numpy.lib.format`` headers (``gzip_npy``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaledql.data.importers.gzip_npy import NpyStream, read_small_array
from scaledql.errors import UserError

STORE_PREFIX = "$store$_"
ARRAYS = ("observation", "action", "reward", "terminal")  # the $store$_ files of a checkpoint


# ------------------------------------------------------------------------------------------------
# Selecting runs and checkpoints


def checkpoint_path(log_dir: Path, name: str, n: int) -> Path:
    return log_dir / f"{name}_ckpt.{n}.gz"


_OBS_RE = re.compile(r"^\$store\$_observation_ckpt\.(\d+)\.gz$")


def find_checkpoints(log_dir: Path) -> list[int]:
    """Checkpoint numbers with an observation file in ``log_dir``, sorted."""
    return sorted(int(m.group(1)) for p in log_dir.iterdir() if (m := _OBS_RE.match(p.name)))


def find_runs(game_dir: Path) -> list[str]:
    runs = [p.name for p in game_dir.iterdir() if (p / "replay_logs").is_dir()]
    return sorted(runs, key=lambda r: (not r.isdigit(), int(r) if r.isdigit() else 0, r))


def parse_runs_spec(spec: str) -> list[str]:
    """``"1-5"``, ``"2,1"``, ``"1-3,7"`` → run names in the order given (numeric ranges
    inclusive; other names as they are), each once."""
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise UserError(f"bad run range {part!r}: end before start")
            names = [str(i) for i in range(lo, hi + 1)]
        else:
            names = [part] if part else []
        out += [r for r in names if r not in out]
    if not out:
        raise UserError(f"no runs in {spec!r}")
    return out


def parse_checkpoint_spec(spec: str) -> list[int]:
    """``"0-9"``, ``"0-4,10,20-29"`` → sorted checkpoint numbers (ranges inclusive)."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"bad checkpoint range {part!r} (expected e.g. 0-9 or 0-4,10,20-29)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UserError(f"bad checkpoint range {part!r}: end before start")
        out.update(range(lo, hi + 1))
    if not out:
        raise UserError(f"no checkpoints in {spec!r}")
    return sorted(out)


@dataclass
class RunSelection:
    run: str
    log_dir: Path
    checkpoints: list[int]


def select(src: Path, game: str, *, runs: list[str] | None = None,
           checkpoints: list[int] | None = None, fraction: float | None = None
           ) -> list[RunSelection]:
    """Resolve ``SRC/GAME/RUN/replay_logs`` and the checkpoints to read from each run.

    ``checkpoints``: explicit numbers (each must exist in every selected run); ``fraction``: the
    first ``floor(fraction * n)`` checkpoints of each run (at least 1), n the run's count;
    neither: all of them.
    """
    src = Path(src)
    game_dir = src / game
    if not game_dir.is_dir():
        if src.name == game and src.is_dir():
            game_dir = src
        else:
            raise UserError(f"{game_dir}: no such directory (expected SRC/{game}/RUN/replay_logs)")
    available = find_runs(game_dir)
    if not available:
        raise UserError(f"{game_dir}: no RUN/replay_logs directories")
    if runs is None:
        runs = available
    missing = [r for r in runs if r not in available]
    if missing:
        raise UserError(f"{game_dir}: no run {', '.join(missing)} (runs: {', '.join(available)})")
    if fraction is not None and not 0 < fraction <= 1:
        raise UserError(f"fraction must be in (0, 1], got {fraction}")
    out = []
    for run in runs:
        log_dir = game_dir / run / "replay_logs"
        present = find_checkpoints(log_dir)
        if not present:
            raise UserError(f"{log_dir}: no $store$_observation_ckpt.N.gz files")
        if checkpoints is not None:
            absent = [n for n in checkpoints if n not in present]
            if absent:
                raise UserError(f"{checkpoint_path(log_dir, STORE_PREFIX + 'observation', absent[0])}"
                                f": missing (checkpoint {absent[0]} is in the selected range)")
            chosen = list(checkpoints)
        elif fraction is not None:
            count = max(1, int(np.floor(fraction * len(present) + 1e-9)))
            chosen = present[:count]
        else:
            chosen = present
        out.append(RunSelection(run, log_dir, chosen))
    return out


# ------------------------------------------------------------------------------------------------
# One checkpoint's small arrays and where its entries lie on the run's timeline


@dataclass
class _Checkpoint:
    n: int
    log_dir: Path
    capacity: int
    frame_hw: tuple[int, int]
    add_count: int  # true add_count when the file was written
    lo: int  # first add (global index) the file holds
    hi: int  # one past the last
    action: np.ndarray  # [C], by slot
    reward: np.ndarray
    terminal: np.ndarray  # bool[C]

    def path(self, name: str) -> Path:
        return checkpoint_path(self.log_dir, name, self.n)


def _load_checkpoint(log_dir: Path, n: int, num_actions: int,
                     prev: _Checkpoint | None = None) -> _Checkpoint:
    """Read and check checkpoint ``n``'s small arrays; ``prev``: checkpoint ``n - 1`` if loaded."""
    obs_path = checkpoint_path(log_dir, STORE_PREFIX + "observation", n)
    header = NpyStream(obs_path)
    header.close()
    if header.dtype != np.uint8 or len(header.shape) != 3:
        raise UserError(f"{obs_path}: holds {header.dtype}{list(header.shape)}, expected "
                        "uint8[capacity, height, width]")
    capacity = header.shape[0]
    arrays = {}
    for name, kind in (("action", "iu"), ("reward", "f"), ("terminal", "iub")):
        path = checkpoint_path(log_dir, STORE_PREFIX + name, n)
        stream = NpyStream(path)  # its header checked before anything is allocated
        if stream.shape != (capacity,) or stream.dtype.kind not in kind:
            stream.close()
            if stream.shape != (capacity,):
                raise UserError(f"{path}: shape {list(stream.shape)} does not match the "
                                f"observations' capacity {capacity} ({obs_path.name})")
            raise UserError(f"{path}: dtype {stream.dtype} is not a {name} type")
        arrays[name] = stream.read_all()
    count_path = checkpoint_path(log_dir, "add_count", n)
    count = read_small_array(count_path)
    if count.shape != () or count.dtype.kind not in "iu":
        raise UserError(f"{count_path}: expected an integer scalar, got {count.dtype}{list(count.shape)}")
    a = int(count)
    if a < 0:
        raise UserError(f"{count_path}: negative add_count {a}")
    if n > 0 and a < capacity:
        a = _true_add_count(a, n, capacity, arrays, prev)
    add_count = a
    lo, hi = max(0, a - capacity), a
    slots = np.arange(lo, hi) % capacity
    rewards = arrays["reward"][slots]
    if not np.isfinite(rewards).all():
        raise UserError(f"{checkpoint_path(log_dir, STORE_PREFIX + 'reward', n)}: NaN or infinite "
                        "rewards")
    actions = arrays["action"][slots]
    if len(actions) and (actions.min() < 0 or actions.max() >= num_actions):
        bad = int(actions.min() if actions.min() < 0 else actions.max())
        raise UserError(f"{checkpoint_path(log_dir, STORE_PREFIX + 'action', n)}: action {bad} "
                        f"out of range [0, {num_actions})")
    return _Checkpoint(n, log_dir, capacity, tuple(header.shape[1:]), add_count, lo, hi,
                       arrays["action"].astype(np.int64), arrays["reward"].astype(np.float32),
                       arrays["terminal"] != 0)


def _true_add_count(a: int, n: int, capacity: int, arrays: dict[str, np.ndarray],
                    prev: _Checkpoint | None) -> int:
    """The true add_count of a ``log_final_buffer`` file, which saved it modulo the capacity.

    It is the first count at or after the previous file's with remainder ``a``, unless a cycle
    went unlogged in between (see the module docstring): then the buffer's contents disagree
    with the previous file where they would overlap, and it is one cycle later. Without the
    previous file, assume every earlier cycle was logged (file ``n - 1`` at ``n C - 1``).
    """
    if prev is None:
        base = n * capacity - 1
        return base + (a - base) % capacity
    first = prev.add_count + (a - prev.add_count) % capacity
    g = np.arange(max(first - capacity, prev.lo), min(first, prev.hi))
    slots = g % capacity
    same = (np.array_equal(arrays["terminal"][slots] != 0, prev.terminal[slots])
            and np.array_equal(arrays["action"][slots], prev.action[slots])
            and np.array_equal(arrays["reward"][slots], prev.reward[slots], equal_nan=True))
    return first if same else first + capacity


@dataclass
class _Part:
    """Adds ``[a, b)`` of the timeline taken from one checkpoint file."""

    ckpt: _Checkpoint
    a: int
    b: int


@dataclass
class _Window:
    """A gap-free stretch of a run's timeline, made of parts from consecutive checkpoints."""

    parts: list[_Part] = field(default_factory=list)
    head_terminals: np.ndarray | None = None  # terminal flags of the stack adds before it

    @property
    def start(self) -> int:
        return self.parts[0].a

    @property
    def end(self) -> int:
        return self.parts[-1].b


def _plan_windows(ckpts: list[_Checkpoint]) -> list[_Window]:
    windows: list[_Window] = []
    covered = -1
    for c in ckpts:
        a = max(c.lo, covered) if covered >= 0 else c.lo
        if a >= c.hi:
            continue  # nothing new in this file
        if not windows or a > covered:
            windows.append(_Window())
        windows[-1].parts.append(_Part(c, a, c.hi))
        covered = c.hi
    return windows


# ------------------------------------------------------------------------------------------------
# Episodes of a window


@dataclass
class _Episode:
    g0: int  # first add of the episode; its entries are adds g0 .. g0 + length - 1
    length: int  # T: real steps = transitions (frames obs_0 .. obs_{T-1}, then a zero frame)
    terminated: bool
    truncated: bool
    partial_start: bool
    actions: np.ndarray  # int64[T]
    rewards: np.ndarray  # float32[T]
    shard: int = -1  # where the layout puts it (dqn_layout)
    frame_start: int = -1


def _window_episodes(win: _Window, stack: int, gap_follows: bool) -> list[_Episode]:
    """Split a window into episodes from its terminal flags; padding adds are dropped."""
    def gather(name: str) -> np.ndarray:
        return np.concatenate([getattr(p.ckpt, name)[np.arange(p.a, p.b) % p.ckpt.capacity]
                               for p in win.parts])

    term, act, rew = gather("terminal"), gather("action"), gather("reward")
    g0 = win.start
    pads = stack - 1
    # head_terminals[m] is add g0 - pads - 1 + m; unknown history: assume mid-episode.
    head = win.head_terminals if win.head_terminals is not None else np.zeros(pads + 1, bool)
    ext = np.concatenate([head[1:], term])  # ext[pads + i] is add g0 + i
    n = len(term)
    pad = np.zeros(n, bool)
    pad[: max(0, min(n, pads - g0))] = True  # the run's first adds pad its first episode
    for j in range(1, pads + 1):  # the pads adds after a terminal one are padding
        pad |= ext[pads - j: pads - j + n]
    # An episode starting at the window's first add has a known start only at the run's start
    # or right after the padding that follows a terminal add.
    head_known = g0 == pads or (win.head_terminals is not None and bool(head[0]))
    real = np.flatnonzero(~pad)
    if not len(real):
        return []
    ends_here = term[real] != 0
    # Padding only follows a terminal add, so each episode's real adds are contiguous.
    cuts = np.flatnonzero(ends_here[:-1]) + 1  # an episode ends at each terminal real add
    episodes: list[_Episode] = []
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(real)], strict=True):
        i, j = int(real[lo]), int(real[hi - 1])
        terminated = bool(term[j])
        episodes.append(_Episode(g0 + i, j - i + 1, terminated,
                                 truncated=not terminated and gap_follows,
                                 partial_start=i == 0 and not head_known,
                                 actions=act[i:j + 1], rewards=rew[i:j + 1]))
    return episodes


def _head_terminals(log_dir: Path, win: _Window, stack: int, num_actions: int) -> np.ndarray | None:
    """Terminal flags of the ``stack`` adds before a window (``bool[stack]``, oldest first), from
    the previous checkpoint file when it is on disk (even if not selected); None when unknown."""
    pads = stack - 1
    if win.start <= pads:  # the run's start: its padding rule needs no history
        return np.zeros(pads + 1, bool)
    n = win.parts[0].ckpt.n - 1
    if n < 0 or not checkpoint_path(log_dir, STORE_PREFIX + "observation", n).exists():
        return None
    try:
        prev = _load_checkpoint(log_dir, n, num_actions)
    except UserError:
        return None  # a damaged unselected file only costs us the head's history
    g = np.arange(win.start - pads - 1, win.start)
    if g[0] < prev.lo or g[-1] >= prev.hi:
        return None
    return prev.terminal[g % prev.capacity]
