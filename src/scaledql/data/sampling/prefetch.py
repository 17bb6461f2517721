"""Batches sampled ahead in background threads, in (pinned) host buffers, moved to the device.

Each worker thread owns a sampler with its own seed stream and ``depth`` reusable host batches.
It fills a free batch (NumPy views of torch tensors, pinned when the device is CUDA, so the copy
can be asynchronous), records its sampler's RNG state *after* that batch, and hands both over.
The consumer takes batches from the workers in a fixed round-robin order, so the sequence of
batches depends only on the seeds, never on thread timing. On CUDA the host→device copy runs on
a side stream while the previous update computes; the compute stream waits for it.

Exact resume: ``state_dict()`` holds, per worker, the RNG state after the last batch the
consumer *took*, and which worker is next; batches sampled ahead but never used are dropped and
re-drawn identically after a resume. ``workers=0`` samples in the calling thread (same batches
as one worker, no thread).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch


class Sampler(Protocol):
    def empty_batch(self) -> Any: ...

    def sample(self, out: Any) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...


class _Slot:
    """One reusable host batch: NumPy views for the sampler, tensors for the copy."""

    def __init__(self, template: Any, pin: bool) -> None:
        """template: a freshly allocated batch (its arrays become this slot's memory)."""
        tensors = {}
        for f in dataclasses.fields(template):
            t = torch.from_numpy(np.ascontiguousarray(getattr(template, f.name)))
            tensors[f.name] = t.pin_memory() if pin else t
        self.tensors = tensors
        self.arrays = type(template)(**{k: t.numpy() for k, t in tensors.items()})
        self.batch_type = type(template)
        self.copied: torch.cuda.Event | None = None


class Prefetcher:
    """``next()`` → a batch dataclass whose fields are tensors on ``device``.

    make_sampler(worker) → that worker's sampler (own seed); states: a ``state_dict()`` to
    resume from. The batch returned stays valid until the next ``next()`` call.
    """

    def __init__(self, make_sampler: Callable[[int], Sampler], device: torch.device,
                 workers: int = 1, depth: int = 2, states: dict | None = None) -> None:
        self.device = torch.device(device)
        self.threaded = workers > 0
        count = max(1, workers)
        self.samplers = [make_sampler(w) for w in range(count)]
        self._next = 0
        if states is not None:
            if len(states["workers"]) != count:
                raise ValueError(f"prefetch state has {len(states['workers'])} workers, not {count}")
            for sampler, state in zip(self.samplers, states["workers"], strict=True):
                sampler.load_state_dict(state)
            self._next = int(states["next"])
        self._taken = [s.state_dict() for s in self.samplers]
        cuda = self.device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(self.device) if cuda else None
        slots_per_worker = max(2, depth) if self.threaded else 1
        self._free: list[queue.Queue[_Slot]] = []
        self._ready: list[queue.Queue[tuple[_Slot, dict] | BaseException]] = []
        for sampler in self.samplers:
            free: queue.Queue[_Slot] = queue.Queue()
            for _ in range(slots_per_worker):  # each slot its own memory
                free.put(_Slot(sampler.empty_batch(), pin=cuda))
            self._free.append(free)
            self._ready.append(queue.Queue())
        self._in_use: _Slot | None = None
        self._in_use_worker = 0
        self._stop = threading.Event()
        self._threads = []
        if self.threaded:
            for w in range(count):
                t = threading.Thread(target=self._work, args=(w,), daemon=True,
                                     name=f"scaledql-sampler-{w}")
                t.start()
                self._threads.append(t)

    # -- producer ----------------------------------------------------------------------------
    def _fill(self, w: int, slot: _Slot) -> tuple[_Slot, dict]:
        self.samplers[w].sample(out=slot.arrays)
        return slot, self.samplers[w].state_dict()

    def _work(self, w: int) -> None:
        try:
            while not self._stop.is_set():
                try:
                    slot = self._free[w].get(timeout=0.1)
                except queue.Empty:
                    continue
                self._ready[w].put(self._fill(w, slot))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._ready[w].put(exc)

    # -- consumer ----------------------------------------------------------------------------
    def _release(self) -> None:
        """Give the previous batch's host buffer back (after its copy finished, on CUDA; on
        CPU the update that used it has returned by now)."""
        if self._in_use is None:
            return
        if self._in_use.copied is not None:
            self._in_use.copied.synchronize()
        self._free[self._in_use_worker].put(self._in_use)
        self._in_use = None

    def next(self) -> Any:
        self._release()
        w = self._next
        if self.threaded:
            item = self._ready[w].get()
            if isinstance(item, BaseException):
                raise item
            slot, state = item
        else:
            slot, state = self._fill(w, self._free[w].get())
        self._taken[w] = state
        self._next = (w + 1) % len(self.samplers)
        self._in_use, self._in_use_worker = slot, w
        return self._to_device(slot)

    def _to_device(self, slot: _Slot) -> Any:
        if self._copy_stream is None:  # CPU: the host tensors are the batch
            return slot.batch_type(**{k: t.to(self.device) for k, t in slot.tensors.items()})
        with torch.cuda.stream(self._copy_stream):
            moved = {k: t.to(self.device, non_blocking=True) for k, t in slot.tensors.items()}
            slot.copied = torch.cuda.Event()
            slot.copied.record(self._copy_stream)
        compute = torch.cuda.current_stream(self.device)
        compute.wait_stream(self._copy_stream)
        for t in moved.values():
            t.record_stream(compute)  # the caching allocator must not reuse them early
        return slot.batch_type(**moved)

    def state_dict(self) -> dict:
        """Per-worker RNG states after the last batch taken, and the next worker."""
        return {"workers": list(self._taken), "next": self._next}

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
