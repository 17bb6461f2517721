"""DQN Replay import throughput: inflate-only rates vs ``scaledql data import dqn-replay``.

    python benchmarks/import_throughput.py [--dir /tmp/scaledql-import-bench] [--entries 200000]

Builds (once, cached under ``--dir``, a few minutes) one run of Pong in the DQN Replay layout
exactly as batch_rl's logged buffer writes it: capacity ``--entries``, checkpoint files 0 and 1
(adds ``0 .. 2 C - 2``), every file ``gzip(np.save(array))`` at gzip's default level 9 as
Dopamine's ``GzipFile`` does, from real Pong frames (84x84 grayscale, frame skip 4, sticky
actions 0.25, random actions; the second file replays the same frames as new episodes); run 2
links to run 1. Then, with the sources in the page cache, measures MB/s of inflated frames
(200,000 x 84 x 84 = 1.41 GB per file):

* inflate only of checkpoint 0's observation file, into one reused 64 MB buffer, with the
  standard library's ``gzip``, ISA-L (``isal``) and zlib-ng (``zlib-ng``), each through its
  fastest streaming reader;
* ``atari_import.import_games`` of that one file, one process;
* ``2 x --runs`` files (checkpoints 0-1 of each run) with ``jobs=1`` and with ``jobs=2``;
* the write ceiling: one and two processes writing 1.41 GB each into ``--out`` as the importer
  writes (no inflate).

``--rlu``: the RL Unplugged row instead. The same checkpoint-0 frames, actions, rewards and
terminals are written as RL Unplugged raw episode files (``DIR/rlu/Pong/run_R-00000-of-00001``,
GZIP TFRecords of one ``tf.train.Example`` per episode, PNG frames from OpenCV at its default
level, serialized with the import's own protobuf messages and framing: a benchmark input, not a
fixture), runs 2.. linking to run 1; then, one run each: PNG decode only (one process), the
``rlu-atari`` import of one file with ``jobs=1``, of ``--runs`` files with ``jobs=2``, and the
``dqn-replay`` import of the same frames with ``jobs=1``, in frames/s, per worker and per core
(CPU seconds of all processes). The VM's 2 cores are shared with whatever else runs (the load
average is printed with every row).

Each import writes a fresh store under ``--dir`` (fsynced, as the importer always does) and
deletes it afterwards. Prints one JSON line per measurement: the best and every run of
``--repeats``, with the load average. Not a test.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

CAPACITY_FILES = 2


def _gz_save(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    with gzip.open(path, "wb") as f:  # compresslevel 9, like Dopamine's GzipFile(fileobj=f)
        f.write(buf.getvalue())


def _play_pong(steps: int, seed: int) -> tuple[np.ndarray, ...]:
    """Random play in Pong: frames uint8[steps, 84, 84], actions, clipped rewards, terminals."""
    from scaledql.suites import get_suite

    env = get_suite("atari").make_env("Pong")
    rng = np.random.default_rng(seed)
    frames = np.empty((steps, 84, 84), np.uint8)
    actions = rng.integers(0, env.action_space.n, steps).astype(np.int32)
    rewards = np.zeros(steps, np.float32)
    terminals = np.zeros(steps, np.uint8)
    obs, _ = env.reset(seed=seed)
    for t in range(steps):
        frames[t] = obs[-1]
        obs, r, terminated, truncated, _ = env.step(int(actions[t]))
        rewards[t] = np.clip(r, -1, 1)
        if terminated or truncated:
            terminals[t] = 1
            obs, _ = env.reset()
    env.close()
    return frames, actions, rewards, terminals


def make_source(root: Path, capacity: int, seed: int = 0) -> Path:
    """SRC/Pong/1/replay_logs with checkpoint files 0 and 1 (batch_rl's logging rule)."""
    log_dir = root / "src" / "Pong" / "1" / "replay_logs"
    if (log_dir / f"add_count_ckpt.{CAPACITY_FILES - 1}.gz").exists():
        return root / "src"
    tmp = log_dir.with_name("replay_logs.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    frames, actions, rewards, terminals = _play_pong(capacity, seed)
    print(json.dumps({"built": "frames", "steps": capacity,
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    # The add sequence: 3 zero adds before every episode's first frame, then its steps; the
    # second pass replays the same frames as new episodes. An index of -1 is a zero frame.
    idx: list[int] = []
    new_episode = True
    for _ in range(CAPACITY_FILES):
        for t in range(capacity):
            if new_episode:
                idx.extend([-1, -1, -1])
            idx.append(t)
            new_episode = bool(terminals[t])
    idx_arr = np.array(idx, np.int64)
    real = idx_arr >= 0
    safe = np.where(real, idx_arr, 0)
    act = np.where(real, actions[safe], 0).astype(np.int32)
    rew = np.where(real, rewards[safe], 0).astype(np.float32)
    term = np.where(real, terminals[safe], 0).astype(np.uint8)
    for n in range(CAPACITY_FILES):
        count = (n + 1) * capacity - 1  # add_count when file n is written
        if not real[count - 1]:  # batch_rl checks after real adds only: that cycle is unlogged
            raise SystemExit(f"padding steps over log point {count}: try another --entries")
        g = np.arange(max(0, count - capacity), count)
        slots = g % capacity
        obs = np.zeros((capacity, 84, 84), np.uint8)
        a = np.zeros(capacity, np.int32)
        r = np.zeros(capacity, np.float32)
        te = np.zeros(capacity, np.uint8)
        obs[slots] = frames[safe[g]]
        obs[slots[~real[g]]] = 0
        a[slots], r[slots], te[slots] = act[g], rew[g], term[g]
        t1 = time.perf_counter()
        for name, arr in (("observation", obs), ("action", a), ("reward", r),
                          ("terminal", te)):
            _gz_save(tmp / f"$store$_{name}_ckpt.{n}.gz", arr)
        _gz_save(tmp / f"add_count_ckpt.{n}.gz", np.array(count, np.int64))
        _gz_save(tmp / f"invalid_range_ckpt.{n}.gz", np.arange(count - 1, count + 3) % capacity)
        print(json.dumps({"built": f"checkpoint {n}", "seconds": round(time.perf_counter() - t1, 1),
                          "observation_gz_bytes":
                          (tmp / f"$store$_observation_ckpt.{n}.gz").stat().st_size}), flush=True)
    os.replace(tmp, log_dir)
    return root / "src"


# ------------------------------------------------------------------------------------------------
# Measurements


def _inflate_only(path: Path, reader: str) -> float:
    """Seconds to inflate ``path`` into one reused 64 MB buffer with a library's fastest
    streaming reader (its C gzip reader; the standard library's ``GzipFile``)."""
    buf = memoryview(bytearray(64 << 20))
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as raw:
        if reader == "gzip":
            f = gzip.GzipFile(fileobj=raw)
        elif reader == "isal":
            from isal import isal_zlib

            f = isal_zlib._GzipReader(raw, 1 << 20)
        else:
            from zlib_ng import zlib_ng

            f = zlib_ng._GzipReader(raw, 1 << 20)
        while f.readinto(buf):
            pass
    return time.perf_counter() - start


def _write_only(paths: list[Path], nbytes: int) -> float:
    """Seconds for ``len(paths)`` processes to each write ``nbytes`` into a new file the way the
    importer does (``pwrite`` of 64 MB pieces, writeback started after each, ``fdatasync``),
    all starting together: the ceiling of any import into that filesystem."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(paths))
    with ProcessPoolExecutor(len(paths), mp_context=ctx, initializer=_set_barrier,
                             initargs=(barrier,)) as pool:
        seconds = max(pool.map(_write_file, paths, [nbytes] * len(paths)))
    for p in paths:
        p.unlink()
    return seconds


_BARRIER = None


def _set_barrier(barrier) -> None:
    global _BARRIER
    _BARRIER = barrier


def _write_file(path: Path, nbytes: int) -> float:
    piece = memoryview(np.random.default_rng(0).integers(0, 255, 64 << 20, np.uint8).data)
    _BARRIER.wait()
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, nbytes)
        for off in range(0, nbytes, len(piece)):
            os.pwrite(fd, piece[: min(len(piece), nbytes - off)], off)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def make_rlu_source(dqn_src: Path, root: Path) -> Path:
    """RL Unplugged raw files of checkpoint 0 of the DQN source's run 1 (see the docstring)."""
    import cv2

    from scaledql.data.importers.gzip_npy import NpyStream
    from scaledql.data.importers.tf_example import Example
    from scaledql.data.importers.tfrecord import frame_record

    path = root / "rlu" / "Pong" / "run_1-00000-of-00001"
    if path.exists():
        return root / "rlu"
    log = dqn_src / "Pong" / "1" / "replay_logs"
    arrays = {n: NpyStream(log / f"$store$_{n}_ckpt.0.gz").read_all()
              for n in ("observation", "action", "reward", "terminal")}
    real = np.flatnonzero(arrays["observation"].reshape(len(arrays["action"]), -1).any(1))
    real = real[real < len(arrays["action"]) - 1]  # slot C-1: the previous cycle's add
    ends = np.flatnonzero(arrays["terminal"][real]) + 1
    path.parent.mkdir(parents=True)
    with gzip.open(path.with_suffix(".tmp"), "wb", compresslevel=6) as f:
        for i, (lo, hi) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
            idx = real[lo:hi]
            ex = Example()
            feats = ex.features.feature
            feats["checkpoint_idx"].int64_list.value.append(0)
            feats["episode_idx"].int64_list.value.append(i)
            feats["observations"].bytes_list.value.extend(
                cv2.imencode(".png", arrays["observation"][j])[1].tobytes() for j in idx)
            feats["actions"].int64_list.value.extend(arrays["action"][idx].tolist())
            feats["unclipped_rewards"].float_list.value.extend(arrays["reward"][idx].tolist())
            feats["discounts"].float_list.value.extend([1.0] * (len(idx) - 1) + [0.0])
            f.write(frame_record(ex.SerializeToString()))
    os.replace(path.with_suffix(".tmp"), path)
    return root / "rlu"


def rlu_rows(src: Path, args: argparse.Namespace, out: Path) -> None:
    """The RL Unplugged row (``--rlu``): decode only, then the imports; frames/s."""
    import cv2

    from scaledql.data.importers.atari_import import ImportOptions, import_games
    from scaledql.data.importers.tf_example import ParsedExample
    from scaledql.data.importers.tfrecord import TFRecordFile

    rlu = make_rlu_source(src, args.dir)
    for r in range(2, args.runs + 1):
        link = rlu / "Pong" / f"run_{r}-00000-of-00001"
        if not link.exists():
            link.symlink_to("run_1-00000-of-00001")
    one = rlu / "Pong" / "run_1-00000-of-00001"
    t0, c0 = time.perf_counter(), time.process_time()
    frames = 0
    with TFRecordFile(one, True) as f:
        for data in f:
            for png in ParsedExample(data, "").bytes("observations"):
                cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
                frames += 1
    wall = time.perf_counter() - t0
    print(json.dumps({"measure": "rlu-decode-only", "frames": frames,
                      "frames_per_s": round(frames / wall), "cpu_s": round(
                          time.process_time() - c0, 2), "load": _load()}), flush=True)

    def cpu_all() -> float:
        own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    runs = [str(r) for r in range(1, args.runs + 1)]
    cases = [("rlu-import-1-file-jobs-1", "rlu-atari", rlu, ["1"], 1),
             (f"rlu-import-{len(runs)}-files-jobs-2", "rlu-atari", rlu, runs, 2),
             ("dqn-import-1-file-jobs-1", "dqn-replay", src, ["1"], 1)]
    for name, source, where, sel_runs, jobs in cases:
        shutil.rmtree(out / "Pong", ignore_errors=True)
        os.sync()
        t0, c0 = time.perf_counter(), cpu_all()
        (s,) = import_games({"Pong": 6}, ImportOptions(src=where, out=out, runs=sel_runs,
                                                       checkpoints=[0], source=source),
                            jobs=jobs)
        wall, cpu = time.perf_counter() - t0, cpu_all() - c0
        print(json.dumps({"measure": name, "frames": s.transitions, "seconds": round(wall, 2),
                          "frames_per_s": round(s.transitions / wall),
                          "frames_per_s_per_worker": round(s.transitions / wall / jobs),
                          "frames_per_cpu_s": round(s.transitions / cpu), "jobs": jobs,
                          "load": _load()}), flush=True)
    shutil.rmtree(out / "Pong", ignore_errors=True)


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/scaledql-import-bench"))
    parser.add_argument("--entries", type=int, default=200_000,
                        help="capacity = entries per checkpoint file (default 200000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=4,
                        help="runs for the multi-file imports (runs 2.. link to run 1; "
                             "default 4: 8 files, 11.3 GB of frames)")
    parser.add_argument("--skip", default="",
                        help="comma list of measurements to skip: inflate-gzip, inflate-isal, "
                             "inflate-zlib-ng, write-only-1, write-only-2, import-1-file-jobs-1, "
                             "import-many-jobs-1, import-many-jobs-2")
    parser.add_argument("--build-only", action="store_true", help="only build the source files")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the imports write (default DIR/out; /dev/shm/... takes the "
                             "disk out of the measurement)")
    parser.add_argument("--rlu", action="store_true",
                        help="the RL Unplugged row instead (see the docstring)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    src = make_source(args.dir, args.entries)
    # Runs 2.. are run 1 again (links): more checkpoint files for the parallel imports.
    for r in range(2, args.runs + 1):
        if not (src / "Pong" / str(r)).exists():
            (src / "Pong" / str(r)).symlink_to("1")
    if args.build_only:
        return
    if args.rlu:
        out = args.out or args.dir / "out"
        out.mkdir(parents=True, exist_ok=True)
        rlu_rows(src, args, out)
        return
    obs0 = src / "Pong" / "1" / "replay_logs" / "$store$_observation_ckpt.0.gz"
    frame_bytes = args.entries * 84 * 84
    for p in obs0.parent.iterdir():  # into the page cache
        p.read_bytes()

    def report(name: str, seconds: list[float], nbytes: int, **extra: object) -> None:
        best = min(seconds)
        print(json.dumps({"measure": name, "best_s": round(best, 3),
                          "MB_per_s": round(nbytes / best / 1e6, 1),
                          "runs_MB_per_s": [round(nbytes / s / 1e6, 1) for s in seconds],
                          **extra, "load": _load()}), flush=True)

    for reader in ("gzip", "isal", "zlib-ng"):
        if f"inflate-{reader}" not in skip:
            report(f"inflate-{reader}", [_inflate_only(obs0, reader)
                                         for _ in range(args.repeats)], frame_bytes)

    from scaledql.data.importers.atari_import import ImportOptions, import_games

    out = args.out or args.dir / "out"
    out.mkdir(parents=True, exist_ok=True)
    for writers in (1, 2):
        if f"write-only-{writers}" not in skip:
            paths = [out / f"write-test-{i}" for i in range(writers)]
            report(f"write-only-{writers}", [_write_only(paths, frame_bytes)
                                             for _ in range(args.repeats)],
                   frame_bytes * writers, out=str(out))

    cpu: list[float] = []

    def cpu_seconds() -> float:
        own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def run_import(runs: list[str], checkpoints: list[int], jobs: int) -> float:
        shutil.rmtree(out / "Pong", ignore_errors=True)
        os.sync()  # the previous run's deletions are not this run's work
        start, cpu0 = time.perf_counter(), cpu_seconds()
        import_games({"Pong": 6}, ImportOptions(src=src, out=out, runs=runs,
                                                checkpoints=checkpoints), jobs=jobs)
        cpu.append(cpu_seconds() - cpu0)
        return time.perf_counter() - start

    runs = [str(r) for r in range(1, args.runs + 1)]
    many = f"import-{2 * len(runs)}-files"
    cases = [("import-1-file-jobs-1", ["1"], [0], 1),
             (f"{many}-jobs-1", runs, [0, 1], 1),
             (f"{many}-jobs-2", runs, [0, 1], 2)]
    for name, sel_runs, ckpts, jobs in cases:
        if name.replace(many, "import-many") in skip:
            continue
        cpu.clear()
        seconds = [run_import(sel_runs, ckpts, jobs) for _ in range(args.repeats)]
        files = len(sel_runs) * len(ckpts)
        report(name, seconds, frame_bytes * files, jobs=jobs, out=str(out),
               cpu_s_per_file=round(min(cpu) / files, 2),
               peak_rss_MB={"main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                            "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                            // 1024})
    shutil.rmtree(out / "Pong", ignore_errors=True)


if __name__ == "__main__":
    main()
