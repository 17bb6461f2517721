"""Running a command's tasks in this process (``jobs == 1``) or in spawned worker processes,
and stopping such a command as a whole. Used by ``data.importers.atari_import`` and ``collect``.

Stopping: under ``stop_signals()`` a SIGINT (Ctrl-C), SIGTERM (``timeout``, a job scheduler) or
SIGHUP (a closed terminal) raises ``Stopped`` in the main thread. ``Pool.close(terminate=True)``
then stops the workers, further signals ignored meanwhile: each
got SIGINT and SIGHUP ignored (the parent decides) and SIGTERM as ``SystemExit``, so its task
unwinds (a ``GameWriter`` removes its partial directory and gives its lock back); one that does
not end within ``STOP_GRACE_S`` is killed. A worker whose parent is gone (killed with SIGKILL)
stops itself the same way. The command catches ``Stopped``, says in one line what it kept and
that the same command continues (``Stopped.saying``), and ``cli.main`` exits 128 + the signal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from scaledql.errors import UserError
from scaledql.progress import ProgressBar


class Inline:
    """jobs == 1: tasks run at once, here; their results are queued as events."""

    def __init__(self, progress: Callable[[int], None]):
        self.progress = progress
        self.events: deque = deque()
        self.failed = False

    def submit(self, key: tuple, fn: Callable, arg: Any) -> None:
        if self.failed:  # the import stops at the error already queued: skip the work
            self.events.append(("cancelled", key, None))
            return
        try:
            self.events.append(("done", key, fn(arg, self.progress)))
        except UserError as exc:
            self.failed = True
            self.events.append(("error", key, exc))

    def next_event(self) -> tuple:
        return self.events.popleft()

    def close(self, terminate: bool = False) -> None:
        pass


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 30.0  # a stopped worker's time to unwind before it is killed
RESEND_S = 5.0  # a swallowed stop is raised again after this long


class Stopped(KeyboardInterrupt):
    """A stop signal reached a command; ``str()`` is its one line for the user, ``exit_code``
    128 + the signal's number."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum

    def saying(self, what: str) -> Stopped:
        """The same stop, its line telling what was kept: ``stopped by SIGTERM: <what>``."""
        return Stopped(self.signum, f"stopped by {signal.Signals(self.signum).name}: {what}")


@contextlib.contextmanager
def stop_signals():
    """SIGINT, SIGTERM and SIGHUP raise ``Stopped`` in the main thread. A stop that something
    swallows (MinAtar imports matplotlib under a bare ``except:``, and a SIGTERM landing there
    was caught) is raised again every ``RESEND_S`` until it leaves this block. While
    ``Pool.close`` stops the workers, signals are ignored (``signals_ignored``). Outside the
    main thread: nothing changes."""
    timers: list[threading.Timer] = []

    def handler(signum: int, frame: object) -> None:
        timer = threading.Timer(RESEND_S, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timers.append(timer)
        timer.start()
        raise Stopped(signum)

    try:
        with _handling(handler):
            yield
    finally:
        for timer in timers:
            timer.cancel()


@contextlib.contextmanager
def signals_ignored():
    """Stop signals dropped: a second Ctrl-C must not cut a stopping command's clean-up short."""
    with _handling(signal.SIG_IGN):
        yield


@contextlib.contextmanager
def _handling(handler: Any):
    try:
        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_PROGRESS_QUEUE: Any = None


def _worker_init(q: Any, parent: int) -> None:
    global _PROGRESS_QUEUE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # and a closed terminal
    signal.signal(signal.SIGTERM, _leave)  # how it stops us
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _PROGRESS_QUEUE = q


class _Leaving(SystemExit):
    """Raised by SIGTERM in a worker: unwinds its task, then ends the process."""


def _leave(signum: int, frame: object) -> None:
    """SIGTERM in a worker: unwind the task (its ``with`` blocks clean up), then exit."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _PROGRESS_QUEUE is not None:
        _PROGRESS_QUEUE.cancel_join_thread()  # the parent reads no more: do not wait to flush
    raise _Leaving(128 + signum)


def _watch_parent(parent: int) -> None:
    """A worker whose parent died without stopping it (SIGKILL) stops itself, and leaves
    regardless once its grace is over: no orphans."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_GRACE_S)
    os._exit(128 + signal.SIGTERM)


def _worker_call(fn: Callable, arg: Any) -> Any:
    try:
        return fn(arg, lambda n: _PROGRESS_QUEUE.put(("progress", None, n)))
    except _Leaving as leaving:
        # Unwound. The executor would catch this as the task's result and wait for the next
        # task with SIGTERM ignored, until its grace ran out and it was killed (30 s a stop).
        os._exit(int(leaving.code))


class Pool:
    """jobs > 1: spawned worker processes; progress and results arrive on one queue. A worker
    that dies (killed, out of memory) fails the command instead of hanging it. Spawned workers
    import the caller's main module: a script using this must do so under
    ``if __name__ == "__main__":``."""

    def __init__(self, jobs: int, progress: Callable[[int], None]):
        ctx = multiprocessing.get_context("spawn")  # no forked torch / OpenMP state
        self.progress = progress
        self.queue = ctx.Queue()
        self.pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                                        initargs=(self.queue, os.getpid()))
        self._closed = False

    def submit(self, key: tuple, fn: Callable, arg: Any) -> None:
        def done(f: Future) -> None:
            if f.cancelled():  # the command is stopping
                return
            exc = f.exception()
            if isinstance(exc, BrokenProcessPool):
                exc = UserError(f"a worker process died ({exc}); run the same command again "
                                "to resume")
            self.queue.put(("done", key, f.result()) if exc is None else ("error", key, exc))

        self.pool.submit(_worker_call, fn, arg).add_done_callback(done)

    def next_event(self) -> tuple:
        while True:
            event = self.queue.get()
            if event[0] != "progress":
                return event
            self.progress(event[2])

    def close(self, terminate: bool = False) -> None:
        """Wait for the workers to finish (``terminate``: stop them now; their half-done
        tasks are redone by the next run). A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if not terminate:
            self.pool.shutdown(wait=True)
            self.queue.close()
            return
        with signals_ignored():
            procs = [p for p in (getattr(self.pool, "_processes", None) or {}).values() if p]
            for proc in procs:
                with contextlib.suppress(OSError):
                    proc.terminate()
            deadline = time.monotonic() + STOP_GRACE_S
            for proc in procs:
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            self.queue.cancel_join_thread()  # nobody reads the events left
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.queue.close()


class Progress:
    """One count over the inflated bytes of every file, with files done / total and an ETA
    (a bar on a terminal, plain lines in a log: ``scaledql.progress``)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.files = self.files_done = 0
        self.bar: ProgressBar | None = None

    def __enter__(self) -> Progress:
        self.bar = ProgressBar(0, "import", "B", unit_scale=True, enabled=self.enabled,
                               smoothing=0.1)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close(last_line=exc_type is None)  # a failed import ends on its error

    def add_work(self, nbytes: int, done_bytes: int, files: int, files_done: int) -> None:
        self.files += files
        self.files_done += files_done
        if self.bar is not None:
            self.bar.add_total(nbytes)
            self.bar.update(done_bytes)
            self._postfix()

    def update(self, nbytes: int) -> None:
        if self.bar is not None:
            self.bar.update(nbytes)

    def file_done(self) -> None:
        self.files_done += 1
        if self.bar is not None:
            self._postfix()

    def _postfix(self) -> None:
        assert self.bar is not None
        self.bar.set_postfix_str(f"{self.files_done}/{self.files} files", refresh=True)
