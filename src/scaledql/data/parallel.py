"""Running the import's tasks: in this process (``jobs == 1``) or in spawned worker processes,
with one progress bar over all of them. Used by ``dqn_import``."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
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


_PROGRESS_QUEUE: Any = None


def _worker_init(q: Any) -> None:
    global _PROGRESS_QUEUE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _PROGRESS_QUEUE = q


def _worker_call(fn: Callable, arg: Any) -> Any:
    return fn(arg, lambda n: _PROGRESS_QUEUE.put(("progress", None, n)))


class Pool:
    """jobs > 1: spawned worker processes; progress and results arrive on one queue. A worker
    that dies (killed, out of memory) fails the import instead of hanging it."""

    def __init__(self, jobs: int, progress: Callable[[int], None]):
        ctx = multiprocessing.get_context("spawn")
        self.progress = progress
        self.queue = ctx.Queue()
        self.pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                                        initargs=(self.queue,))

    def submit(self, key: tuple, fn: Callable, arg: Any) -> None:
        def done(f: Future) -> None:
            if f.cancelled():  # the import is stopping
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
        if terminate:  # stop the workers now; their half-done units are redone on resume
            for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
                proc.terminate()
        self.pool.shutdown(wait=True, cancel_futures=terminate)  # a second call does nothing


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


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM stops the import like Ctrl-C (workers terminated, staging kept for a resume)."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
