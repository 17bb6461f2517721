"""DistributedDataParallel: a 2-process step equals the single-process step on the union batch."""

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scaledql.agents.scaled_ql import ScaledQL
from test_agent import PROBLEM, TINY, Batch, random_batch

WORLD = 2
BATCH = 16


def union_batch() -> Batch:
    """Sorted by game so that each rank's half holds a single game: every rank then has one
    head without samples, the case where DDP must still see gradients for all parameters."""
    batch = random_batch(BATCH, seed=7)
    order = np.argsort(batch.game_id, kind="stable")
    batch = Batch(**{k: v[order] for k, v in vars(batch).items()})
    batch.game_id[: BATCH // 2] = 0
    batch.game_id[BATCH // 2 :] = 1
    batch.action %= min(PROBLEM.num_actions)
    return batch


def shard(batch: Batch, rank: int) -> Batch:
    per = BATCH // WORLD
    return Batch(**{k: v[rank * per : (rank + 1) * per] for k, v in vars(batch).items()})


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(rank)  # different local inits: DDP must broadcast rank 0's weights
        agent = ScaledQL(TINY, PROBLEM, device="cpu", distributed=True)
        metrics = agent.update(shard(union_batch(), rank))
        torch.save({"online": agent.online.state_dict(), "grad_norm": float(metrics["grad_norm"])},
                   f"{out_dir}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while a slower one is in a collective
    finally:
        dist.destroy_process_group()


def test_two_process_step_equals_single_process_step_on_union(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)

    torch.set_num_threads(1)
    torch.manual_seed(0)  # rank 0's initialization
    single = ScaledQL(TINY, PROBLEM, device="cpu")
    initial = {k: v.clone() for k, v in single.online.state_dict().items()}
    metrics = {k: float(v) for k, v in single.update(union_batch()).items()}

    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert abs(result["grad_norm"] - metrics["grad_norm"]) < 1e-6 * max(1.0, metrics["grad_norm"])
        for name, want in single.online.state_dict().items():
            got = result["online"][name]
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=f"rank {rank}: {name}")
    # The step really moved the weights (so the comparison above is not trivially true).
    moved = max((single.online.state_dict()[k] - v).abs().max().item() for k, v in initial.items())
    assert moved > 1e-5
