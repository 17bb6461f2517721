"""The prefetching pipeline: batches in a fixed order whatever the thread timing, exact resume
from the state of the last batch taken, worker errors surface in the consumer."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from scaledql.data.sampling.prefetch import Prefetcher
from scaledql.data.sampling.sampler import BatchSpec, make_sampler
from scaledql.data.store.dataset import open_dataset

SPEC = BatchSpec("transitions", batch_size=6, n_step=2)


@pytest.fixture
def store(tmp_path, write_game):
    write_game(tmp_path, "breakout", [(9, True, False), (5, False, True), (12, True, False)])
    write_game(tmp_path, "asterix", [(7, True, False), (4, True, False)], num_actions=5)
    return open_dataset(tmp_path)


def maker(dataset, slow_worker: int | None = None):
    def make(worker: int):
        sampler = make_sampler(dataset, dataset.games, SPEC, SPEC.batch_size,
                               np.random.SeedSequence([3, 0, worker]))
        if worker == slow_worker:  # a worker that lags must not change the order
            real = sampler.sample

            def slow(out=None):
                time.sleep(0.02)
                return real(out=out)

            sampler.sample = slow
        return sampler
    return make


def take(prefetcher: Prefetcher, n: int) -> list[dict[str, np.ndarray]]:
    # copy: a returned batch is only valid until the next call
    return [{k: v.clone().numpy() for k, v in vars(prefetcher.next()).items()} for _ in range(n)]


def same(a, b) -> bool:
    return all(all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_order_is_fixed_and_resume_is_exact(store, workers):
    with Prefetcher(maker(store), torch.device("cpu"), workers=workers, depth=3) as p:
        straight = take(p, 9)
    with Prefetcher(maker(store, slow_worker=0), torch.device("cpu"), workers=workers) as p:
        assert same(take(p, 9), straight)  # thread timing does not matter
    with Prefetcher(maker(store), torch.device("cpu"), workers=workers, depth=3) as p:
        first = take(p, 4)
        state = p.state_dict()
        take(p, 2)  # and more sampled ahead in the background: none of it is in the state
    with Prefetcher(maker(store), torch.device("cpu"), workers=workers, states=state) as p:
        rest = take(p, 5)
    assert same(first + rest, straight)


def test_one_worker_gives_the_synchronous_batches(store):
    with Prefetcher(maker(store), torch.device("cpu"), workers=0) as p:
        sync = take(p, 5)
    with Prefetcher(maker(store), torch.device("cpu"), workers=1) as p:
        assert same(take(p, 5), sync)


def test_batches_do_not_alias_each_other(store):
    with Prefetcher(maker(store), torch.device("cpu"), workers=1, depth=2) as p:
        a = p.next()
        obs = a.obs.clone()
        time.sleep(0.1)  # the worker fills its other buffers meanwhile
        assert torch.equal(a.obs, obs)  # the batch in use is never overwritten


def test_worker_errors_reach_the_consumer(store):
    def make(worker):
        sampler = maker(store)(worker)

        def broken(out=None):
            raise OSError("disk gone")

        sampler.sample = broken
        return sampler

    with Prefetcher(make, torch.device("cpu"), workers=1) as p, pytest.raises(OSError, match="disk gone"):
        p.next()
