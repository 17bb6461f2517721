"""Multi-process commands stop as a whole: SIGTERM (``timeout``, a scheduler), SIGINT (Ctrl-C)
or SIGHUP (a closed terminal) sent to ``collect --jobs 2`` or ``data import dqn-replay
--jobs 2`` stops its workers (no process left), gives the store locks back, keeps what finished,
says so in one line and exits non-zero; the same command run again finishes a store that
``data verify`` accepts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import scaledql
from scaledql.cli import main
from test_collect import TINY_FLAGS
from test_dqn_import import make_source

# Runs the CLI, one game held up in its worker (asleep, its store being written) so that the
# signal finds one game finished and one under way. Workers import this file too (spawn).
DRIVER = """
import functools, os, sys, time
from pathlib import Path
marks = Path(os.environ["MARKS"])
kind, slow = os.environ["SLOW"].split(":")
if kind == "collect":
    from scaledql import collect as mod
    real = mod.run_online
    def run_online(learner, suite, game, *args, **kwargs):
        (marks / game).touch()
        if game == slow:
            time.sleep(600)
        return real(learner, suite, game, *args, **kwargs)
    mod.run_online = run_online
else:
    from scaledql.data.importers import atari_import as mod
    real = mod._copy
    @functools.wraps(real)
    def _copy(task, progress=None):
        if task[0].game == slow:
            try:  # the first of its files only: the other worker goes on
                os.close(os.open(marks / slow, os.O_CREAT | os.O_EXCL))
                time.sleep(600)
            except FileExistsError:
                pass
        return real(task, progress)
    mod._copy = _copy
if __name__ == "__main__":
    from scaledql.cli import main
    sys.exit(main(sys.argv[1:]))
"""
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _left(pids: dict[int, bytes]) -> list[bytes]:
    """The command lines of ``pids`` still alive once they had a moment to exit (the resource
    tracker leaves after its parent has closed its pipe)."""
    for _ in range(100):
        alive = [cmd for pid, cmd in pids.items() if _alive(pid)]
        if not alive:
            break
        subprocess.run(["sleep", "0.1"])
    return alive


def _stop(tmp_path: Path, args: list[str], slow: str, ready: list[Path],
          sig: signal.Signals) -> str:
    """Run ``args`` under the driver, send ``sig`` once every path of ``ready`` exists; the
    command's stderr, after checking it left no process behind."""
    driver, marks = tmp_path / "driver.py", tmp_path / "marks"
    driver.write_text(DRIVER)
    marks.mkdir()
    env = {**os.environ, "SLOW": slow, "MARKS": str(marks),
           "PYTHONPATH": str(Path(scaledql.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, str(driver), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not all(p.exists() for p in ready) and proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        workers = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _children(proc.pid)}
        assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert not _left(workers), err  # no orphan
    assert "Traceback" not in err and "leaked" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"stopped by {sig.name}: kept ") and \
        "run the same command to continue" in lines[-1], err
    return lines[-1]


def _again(args: list[str]) -> str:
    """The same command line, run again (as the user would: its store records the command)."""
    env = {**os.environ, "PYTHONPATH": str(Path(scaledql.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "scaledql", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_stopped_collection_stops_its_workers_and_continues(tmp_path, sig):
    out = tmp_path / "d"
    args = ["collect", "--games", "breakout,asterix", "--out", str(out), "--jobs", "2",
            *TINY_FLAGS]
    line = _stop(tmp_path, args, "collect:asterix",
                 [out / "breakout" / "manifest.json", tmp_path / "marks" / "asterix",
                  out / ".asterix.lock"], sig)
    assert line == (f"stopped by {sig.name}: kept breakout in {out}; asterix not finished "
                    "(partial data removed); run the same command to continue")
    assert sorted(p.name for p in out.iterdir()) == ["_agents", "breakout"]  # no lock, no partial
    printed = _again(args)  # breakout kept, asterix collected
    assert f"breakout  kept: already in {out}" in printed and "asterix " in printed
    assert main(["data", "verify", str(out)]) == 0


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_stopped_import_stops_its_workers_and_continues(tmp_path, sig):
    src, out = tmp_path / "src", tmp_path / "out"
    make_source(src)
    args = ["data", "import", "dqn-replay", str(src), "--games", "Pong,Breakout", "--runs",
            "1-2", "--out", str(out), "--jobs", "2"]
    line = _stop(tmp_path, args, "import:Breakout",
                 [out / "Pong" / "manifest.json", tmp_path / "marks" / "Breakout"], sig)
    assert line.startswith(f"stopped by {sig.name}: kept Pong published; Breakout: ")
    assert not list(out.glob(".*.lock"))  # the locks given back; Breakout's staging kept
    printed = _again(args)
    assert "already imported" in printed and printed.count("wrote") == 1
    assert main(["data", "verify", str(out)]) == 0


def test_a_swallowed_stop_is_raised_again(monkeypatch):
    """MinAtar imports matplotlib under a bare ``except:``: a study's one SIGTERM landing there
    was caught, and its collect job ran on."""
    from scaledql import worker_pool as parallel

    monkeypatch.setattr(parallel, "RESEND_S", 0.2)
    swallowed = 0
    with pytest.raises(parallel.Stopped, match="stopped by SIGTERM"), parallel.stop_signals():
        sent = False
        for _ in range(100):  # work that swallows every stop (a bare except around each step)
            if swallowed == 2:
                break
            try:
                if not sent:
                    sent = True
                    os.kill(os.getpid(), signal.SIGTERM)  # one signal
                subprocess.run(["sleep", "0.05"])
            except BaseException:
                swallowed += 1
        subprocess.run(["sleep", "1"])  # not swallowed now: the stop comes again
    assert swallowed == 2
    with parallel.stop_signals(), parallel.signals_ignored():  # while the workers stop: dropped
        os.kill(os.getpid(), signal.SIGHUP)
        subprocess.run(["sleep", "0.3"])


def _sleep_then_mark(arg, progress):
    """A worker's task: mark the file, then sleep until stopped (its ``finally`` must run)."""
    import time

    path = Path(arg)
    try:
        path.write_text("started")
        progress(1)
        time.sleep(600)
    finally:
        path.write_text("unwound")


def test_a_stopped_worker_unwinds_its_task_and_exits_itself(tmp_path):
    """``Pool.close(terminate=True)`` (a stopped command): each busy worker's task unwinds and the
    worker exits on its own (exit 128 + SIGTERM), rather than being killed once its grace is
    over (the executor used to take the unwinding SystemExit for the task's result and wait
    for more work)."""
    from scaledql.worker_pool import Pool

    marks = [tmp_path / "a", tmp_path / "b"]
    pool = Pool(2, lambda n: None)
    for i, mark in enumerate(marks):
        pool.submit(("task", i), _sleep_then_mark, str(mark))
    while not all(m.exists() for m in marks):
        subprocess.run(["sleep", "0.1"])
    procs = list(pool.pool._processes.values())
    pool.close(terminate=True)
    assert [m.read_text() for m in marks] == ["unwound", "unwound"]
    assert sorted(p.exitcode for p in procs) == [128 + signal.SIGTERM] * 2
